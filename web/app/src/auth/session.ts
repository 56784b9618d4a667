import {
  LogInDocument,
  LogOutDocument,
  RefreshSessionDocument,
  SignUpDocument,
  type LogInInput,
  type SessionFieldsFragment,
  type SignUpInput,
} from "../generated/graphql";
import { postGraphQL } from "../api/http";

export type SessionInfo = Pick<SessionFieldsFragment, "user" | "organization">;
type Listener = (info: SessionInfo | null) => void;

/** What the session needs from the server; tests pass a stand-in. */
export interface AuthTransport {
  signUp(input: SignUpInput): Promise<SessionFieldsFragment>;
  logIn(input: LogInInput): Promise<SessionFieldsFragment>;
  refresh(refreshToken: string): Promise<SessionFieldsFragment>;
  logOut(refreshToken: string): Promise<void>;
}

export const httpAuthTransport: AuthTransport = {
  signUp: async (input) => (await postGraphQL(SignUpDocument, { input })).signUp,
  logIn: async (input) => (await postGraphQL(LogInDocument, { input })).logIn,
  refresh: async (refreshToken) =>
    (await postGraphQL(RefreshSessionDocument, { refreshToken })).refreshSession,
  logOut: async (refreshToken) => {
    await postGraphQL(LogOutDocument, { refreshToken });
  },
};

const REFRESH_KEY = "foundry.refreshToken";
/** Refresh this long before the access token expires. */
const EARLY_SECONDS = 60;

/**
 * The access token lives only in memory. The refresh token is kept in memory and in
 * sessionStorage: a reload of this tab can resume the session, a new tab or a closed
 * browser cannot, and two tabs never hold (and race to rotate) the same refresh token.
 * Refreshes are single-flight: concurrent callers share one request.
 */
export class Session {
  private access: string | null = null;
  private refreshToken: string | null;
  private expiresAt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inflight: Promise<boolean> | null = null;
  private listeners = new Set<Listener>();
  info: SessionInfo | null = null;

  constructor(
    private readonly transport: AuthTransport = httpAuthTransport,
    private readonly storage: Storage | null = typeof sessionStorage === "undefined" ? null : sessionStorage,
    private readonly now: () => number = Date.now,
  ) {
    this.refreshToken = storage?.getItem(REFRESH_KEY) ?? null;
  }

  get accessToken(): string | null {
    return this.access;
  }

  get canResume(): boolean {
    return this.refreshToken !== null;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async signUp(input: SignUpInput): Promise<void> {
    this.establish(await this.transport.signUp(input));
  }

  async logIn(input: LogInInput): Promise<void> {
    this.establish(await this.transport.logIn(input));
  }

  /** A token that is valid for a while yet, refreshing first when it is about to expire. */
  async validAccessToken(): Promise<string | null> {
    if (this.access && this.now() < this.expiresAt - EARLY_SECONDS * 1000) return this.access;
    if (this.refreshToken && (await this.refresh())) return this.access;
    return this.access;
  }

  /** Rotate the tokens; false (and signed out) when the server refuses the refresh token. */
  refresh(): Promise<boolean> {
    if (!this.inflight) {
      const token = this.refreshToken;
      this.inflight = (async () => {
        if (!token) return false;
        try {
          this.establish(await this.transport.refresh(token));
          return true;
        } catch (error) {
          const code = (error as { code?: string }).code;
          // A network blip keeps the session; a refused token ends it.
          if (code !== "NETWORK_ERROR" && code !== "SERVICE_UNAVAILABLE") this.clear();
          return false;
        } finally {
          this.inflight = null;
        }
      })();
    }
    return this.inflight;
  }

  async logOut(): Promise<void> {
    const token = this.refreshToken;
    this.clear();
    if (token) {
      try {
        await this.transport.logOut(token);
      } catch {
        // Already signed out locally; the server session expires on its own.
      }
    }
  }

  /** Forget everything (the server refused our tokens). */
  clear(): void {
    this.access = null;
    this.refreshToken = null;
    this.expiresAt = 0;
    this.storage?.removeItem(REFRESH_KEY);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.setInfo(null);
  }

  private establish(payload: SessionFieldsFragment): void {
    this.access = payload.accessToken;
    this.refreshToken = payload.refreshToken;
    this.expiresAt = this.now() + payload.expiresIn * 1000;
    this.storage?.setItem(REFRESH_KEY, payload.refreshToken);
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.max(5, payload.expiresIn - EARLY_SECONDS) * 1000;
    this.timer = setTimeout(() => void this.refresh(), delay);
    this.setInfo({ user: payload.user, organization: payload.organization });
  }

  private setInfo(info: SessionInfo | null): void {
    this.info = info;
    for (const listener of this.listeners) listener(info);
  }
}
