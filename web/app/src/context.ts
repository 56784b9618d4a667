import { createContext, useContext } from "react";
import type { Session, SessionInfo } from "./auth/session";

export interface AppContextValue {
  session: Session;
  info: SessionInfo;
}

export const AppContext = createContext<AppContextValue | null>(null);

export function useApp(): AppContextValue {
  const value = useContext(AppContext);
  if (!value) throw new Error("useApp outside the signed-in app");
  return value;
}
