import { useState, type FormEvent } from "react";
import { useMutation } from "urql";
import { AppError, toAppError } from "../api/errors";
import { ErrorNote } from "../components/Feedback";
import { useApp } from "../context";
import { ChangePasswordDocument } from "../generated/graphql";

/** The server's limits (domain/validation.py), checked here only to save a round trip:
 * the server checks them (and the rest of the policy) again and has the last word. */
export const MIN_PASSWORD_LENGTH = 10;
export const MAX_PASSWORD_LENGTH = 256;

/** Counted as the server counts them (Python's len): by code point, so an emoji is one. */
const lengthOf = (password: string) => [...password].length;

/** The shared words for INVALID_CREDENTIALS speak of an email and password not matching an
 * account, which is wrong here: only the current password was asked for. */
class WrongCurrentPassword extends AppError {
  constructor() {
    super("INVALID_CREDENTIALS");
    this.message = "The current password is incorrect.";
  }
}

function failureOf(error: unknown): AppError {
  const failure = toAppError(error);
  return failure.code === "INVALID_CREDENTIALS" ? new WrongCurrentPassword() : failure;
}

interface Problem {
  field: "next" | "confirmation";
  message: string;
}

/** What is wrong with the new password before it is sent, if anything, and where. */
function problemWith(next: string, confirmation: string): Problem | null {
  if (lengthOf(next) < MIN_PASSWORD_LENGTH) {
    return { field: "next", message: `The new password needs at least ${MIN_PASSWORD_LENGTH} characters.` };
  }
  if (lengthOf(next) > MAX_PASSWORD_LENGTH) {
    return { field: "next", message: `The new password can have at most ${MAX_PASSWORD_LENGTH} characters.` };
  }
  if (next !== confirmation) {
    return { field: "confirmation", message: "The new password and its confirmation do not match." };
  }
  return null;
}

export function AccountScreen() {
  const { info } = useApp();
  return (
    <div className="account-screen">
      <h1 tabIndex={-1}>Your account</h1>
      <p className="muted">Signed in as {info.user.email}</p>
      <ChangePasswordForm />
    </div>
  );
}

/**
 * changePassword: the server ends every other session of the user (other devices,
 * browsers and tabs, in every organisation) and keeps this one, so nothing here changes
 * on success but the form.
 */
export function ChangePasswordForm() {
  const [, changePassword] = useMutation(ChangePasswordDocument);
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [confirmation, setConfirmation] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [failure, setFailure] = useState<AppError | null>(null);
  const [changed, setChanged] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (busy) return;
    setFailure(null);
    setChanged(false);
    const found = problemWith(next, confirmation);
    setProblem(found);
    if (found) return;
    setBusy(true);
    const result = await changePassword({ currentPassword: current, newPassword: next });
    setBusy(false);
    if (result.error || !result.data?.changePassword) {
      setFailure(failureOf(result.error));
      return;
    }
    // Passwords are not left sitting in the form once they have done their job.
    setCurrent("");
    setNext("");
    setConfirmation("");
    setChanged(true);
  }

  return (
    <section className="panel" aria-labelledby="password-heading">
      <h2 id="password-heading">Change password</h2>
      <p className="muted">Changing it signs you out everywhere else: other devices, browsers and tabs. This tab stays signed in.</p>
      <form className="form narrow" onSubmit={(event) => void submit(event)}>
        <label>
          Current password
          <input
            type="password"
            autoComplete="current-password"
            required
            value={current}
            onChange={(event) => setCurrent(event.target.value)}
          />
        </label>
        <label>
          New password
          <input
            type="password"
            autoComplete="new-password"
            required
            minLength={MIN_PASSWORD_LENGTH}
            value={next}
            onChange={(event) => setNext(event.target.value)}
            aria-invalid={problem?.field === "next" || undefined}
            aria-describedby={problem?.field === "next" ? "new-password-hint password-problem" : "new-password-hint"}
          />
        </label>
        <p id="new-password-hint" className="hint">
          At least {MIN_PASSWORD_LENGTH} characters, not your email address; a few unrelated words make a strong
          password.
        </p>
        <label>
          Confirm new password
          <input
            type="password"
            autoComplete="new-password"
            required
            value={confirmation}
            onChange={(event) => setConfirmation(event.target.value)}
            aria-invalid={problem?.field === "confirmation" || undefined}
            aria-describedby={problem?.field === "confirmation" ? "password-problem" : undefined}
          />
        </label>
        {problem && (
          <p id="password-problem" className="error-text" role="alert">
            {problem.message}
          </p>
        )}
        {failure && <ErrorNote error={failure} />}
        {changed && (
          <p className="success-note" role="status">
            Your password has been changed. You were signed out on your other devices, browsers and tabs; this tab
            stays signed in.
          </p>
        )}
        <div>
          <button type="submit" className="button" disabled={busy}>
            {busy ? "Changing password…" : "Change password"}
          </button>
        </div>
      </form>
    </section>
  );
}
