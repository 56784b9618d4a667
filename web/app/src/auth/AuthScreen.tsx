import { useEffect, useRef, useState, type FormEvent } from "react";
import { AppError, toAppError } from "../api/errors";
import { ErrorNote } from "../components/Feedback";
import type { Session } from "./session";

type Mode = "login" | "signup";

export function AuthScreen({ session }: { session: Session }) {
  const [mode, setMode] = useState<Mode>("login");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [organizationName, setOrganizationName] = useState("");
  const [busy, setBusy] = useState(false);
  // Why the last session ended, when the server (or another tab) ended it.
  const [error, setError] = useState<AppError | null>(() => (session.endReason ? new AppError(session.endReason) : null));
  const heading = useRef<HTMLHeadingElement>(null);

  useEffect(() => heading.current?.focus(), [mode]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === "signup") {
        await session.signUp({ email, password, organizationName: organizationName.trim() || null });
      } else {
        await session.logIn({ email, password });
      }
    } catch (caught) {
      setError(toAppError(caught));
      setBusy(false);
    }
  }

  const signup = mode === "signup";
  return (
    <main className="auth">
      <div className="auth-card">
        <p className="brand" aria-hidden="true">Knowledge Foundry</p>
        <h1 ref={heading} tabIndex={-1}>
          {signup ? "Create your account" : "Log in"}
        </h1>
        <p className="muted">
          {signup
            ? "Upload your documents, then ask questions and get answers with their sources."
            : "Ask questions about your organisation's documents."}
        </p>
        <form onSubmit={submit} className="form">
          <label>
            Email
            <input type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
          </label>
          <label>
            Password
            <input
              type="password"
              autoComplete={signup ? "new-password" : "current-password"}
              required
              minLength={signup ? 10 : undefined}
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              aria-describedby={signup ? "password-hint" : undefined}
            />
          </label>
          {signup && (
            <p id="password-hint" className="hint">
              At least 10 characters; a few unrelated words make a strong password.
            </p>
          )}
          {signup && (
            <label>
              Organisation name <span className="muted">(optional)</span>
              <input value={organizationName} onChange={(e) => setOrganizationName(e.target.value)} autoComplete="organization" />
            </label>
          )}
          {error && <ErrorNote error={error} />}
          <button type="submit" className="button" disabled={busy}>
            {busy ? "Please wait…" : signup ? "Sign up" : "Log in"}
          </button>
        </form>
        <p className="switch">
          {signup ? "Already have an account?" : "New here?"}{" "}
          <button
            type="button"
            className="link"
            onClick={() => {
              setMode(signup ? "login" : "signup");
              setError(null);
            }}
          >
            {signup ? "Log in" : "Create an account"}
          </button>
        </p>
      </div>
    </main>
  );
}
