import { useEffect, useMemo, useState } from "react";
import { Provider } from "urql";
import { Session, type SessionInfo } from "./auth/session";
import { AuthScreen } from "./auth/AuthScreen";
import { createApiClients } from "./api/client";
import { AppContext } from "./context";
import { Shell } from "./Shell";
import { Spinner } from "./components/Feedback";

export function App({ session: given }: { session?: Session }) {
  const session = useMemo(() => given ?? new Session(), [given]);
  const [info, setInfo] = useState<SessionInfo | null>(session.info);
  const [resuming, setResuming] = useState(session.info === null && session.canResume);

  useEffect(() => session.subscribe(setInfo), [session]);
  useEffect(() => {
    if (!resuming) return;
    void session.resume().finally(() => setResuming(false));
  }, [session, resuming]);

  // New clients per signed-in session: nothing cached or connected outlives a log-out.
  const clients = useMemo(() => (info ? createApiClients(session) : null), [info?.user.id, info?.organization.id, session]);
  useEffect(() => () => clients?.sockets.dispose(), [clients]);

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
