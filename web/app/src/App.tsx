import { useEffect, useMemo, useState } from "react";
import { Provider } from "urql";
import { Session, type SessionInfo } from "./auth/session";
import { AuthScreen } from "./auth/AuthScreen";
import { Unreachable } from "./auth/Unreachable";
import { createApiClients } from "./api/client";
import { AppError } from "./api/errors";
import { AppContext } from "./context";
import { Shell } from "./Shell";
import { Spinner } from "./components/Feedback";

/** Waits between attempts to resume a session the server could not be asked about:
 * doubling from the first, at most the last (or the server's retryAfter, when longer). */
const FIRST_RETRY_MS = 2000;
const MAX_RETRY_MS = 30_000;

export function App({ session: given }: { session?: Session }) {
  const session = useMemo(() => given ?? new Session(), [given]);
  const [info, setInfo] = useState<SessionInfo | null>(session.info);
  const [resuming, setResuming] = useState(session.info === null && session.canResume);
  // Why resuming failed while the refresh token is still good (server restarting, network
  // down): the session is kept and tried again, not dropped for the log-in screen.
  const [unreachable, setUnreachable] = useState<AppError | null>(null);
  const [attempts, setAttempts] = useState(0);

  useEffect(() => session.subscribe(setInfo), [session]);
  useEffect(() => {
    if (!resuming) return;
    let current = true;
    void session.resume().then((resumed) => {
      if (!current) return;
      // Only a refused token (or another tab holding it) forgets it: canResume is false then.
      setUnreachable(!resumed && session.canResume ? (session.refreshFailure ?? new AppError("NETWORK_ERROR")) : null);
      setResuming(false);
    });
    return () => {
      current = false;
    };
  }, [session, resuming]);

  const retry = () => {
    setAttempts((n) => n + 1);
    setResuming(true);
  };
  useEffect(() => {
    if (!unreachable || resuming) return;
    const backoff = Math.min(FIRST_RETRY_MS * 2 ** attempts, MAX_RETRY_MS);
    const timer = setTimeout(retry, Math.max(backoff, (unreachable.retryAfter ?? 0) * 1000));
    return () => clearTimeout(timer);
  }, [unreachable, resuming, attempts]);

  // New clients per signed-in session: nothing cached or connected outlives a log-out.
  const clients = useMemo(() => (info ? createApiClients(session) : null), [info?.user.id, info?.organization.id, session]);
  useEffect(() => () => clients?.sockets.dispose(), [clients]);

  if (unreachable) {
    return (
      <Unreachable
        error={unreachable}
        busy={resuming}
        onRetry={retry}
        onLogIn={() => {
          session.clear();
          setResuming(false);
          setUnreachable(null);
        }}
      />
    );
  }
  if (resuming) {
    return (
      <main className="centered">
        <Spinner label="Resuming your session…" />
      </main>
    );
  }
  if (!info || !clients) return <AuthScreen session={session} />;
  return (
    // Keyed: a switch of organisation mounts every screen anew (uploads queued in the old
    // one are cancelled, its lists and pages forgotten), as a log-out would.
    <Provider key={`${info.user.id}:${info.organization.id}`} value={clients.client}>
      <AppContext.Provider value={{ session, info }}>
        <Shell />
      </AppContext.Provider>
    </Provider>
  );
}
