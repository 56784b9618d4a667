import { useEffect, useRef } from "react";
import type { AppError } from "../api/errors";
import { ErrorNote } from "../components/Feedback";

interface Props {
  error: AppError;
  /** A new attempt is running. */
  busy: boolean;
  onRetry: () => void;
  onLogIn: () => void;
}

/** A reload while the server restarts (or the network is down): the session is kept and
 * resumed once the server answers, instead of sending the user to the log-in screen. */
export function Unreachable({ error, busy, onRetry, onLogIn }: Props) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);
  return (
    <main className="auth">
      <div className="auth-card">
        <p className="brand" aria-hidden="true">Knowledge Foundry</p>
        <h1 ref={heading} tabIndex={-1}>
          Cannot reach the server
        </h1>
        <p className="muted">You are still signed in: your session resumes as soon as the server answers. Trying again by itself.</p>
        <ErrorNote error={error} />
        <div className="form">
          <button type="button" className="button" disabled={busy} onClick={onRetry}>
            {busy ? "Trying again…" : "Try again"}
          </button>
        </div>
        <p className="switch">
          <button type="button" className="link" onClick={onLogIn}>
            Log in again instead
          </button>
        </p>
      </div>
    </main>
  );
}
