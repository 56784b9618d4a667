import {
  LogInDocument,
  LogOutDocument,
  RefreshSessionDocument,
  SignUpDocument,
  SwitchOrganizationDocument,
  type LogInInput,
  type SessionFieldsFragment,
  type SignUpInput,
} from "../generated/graphql";
import { SIGN_IN_TIMEOUT_MS, postGraphQL } from "../api/http";
import { AppError } from "../api/errors";

export type SessionInfo = Pick<SessionFieldsFragment, "user" | "organization">;
type Listener = (info: SessionInfo | null) => void;
type Probe = { type: "probe" | "held"; mark: string };

/** What the session needs from the server; tests pass a stand-in. */
export interface AuthTransport {
  signUp(input: SignUpInput): Promise<SessionFieldsFragment>;
  logIn(input: LogInInput): Promise<SessionFieldsFragment>;
  refresh(refreshToken: string): Promise<SessionFieldsFragment>;
  switchOrganization(refreshToken: string, organizationId: string): Promise<SessionFieldsFragment>;
  logOut(refreshToken: string): Promise<void>;
}

export const httpAuthTransport: AuthTransport = {
  signUp: async (input) => (await postGraphQL(SignUpDocument, { input }, SIGN_IN_TIMEOUT_MS)).signUp,
  logIn: async (input) => (await postGraphQL(LogInDocument, { input }, SIGN_IN_TIMEOUT_MS)).logIn,
  refresh: async (refreshToken) =>
    (await postGraphQL(RefreshSessionDocument, { refreshToken })).refreshSession,
  switchOrganization: async (refreshToken, organizationId) =>
    (await postGraphQL(SwitchOrganizationDocument, { refreshToken, organizationId })).switchOrganization,
  logOut: async (refreshToken) => {
    await postGraphQL(LogOutDocument, { refreshToken });
  },
};

const REFRESH_KEY = "foundry.refreshToken";
const MARK_KEY = "foundry.sessionMark";
const CHANNEL = "foundry.session";
/** How long a tab that resumes waits to hear whether another tab holds its session. */
const PROBE_MS = 150;
/** Codes with which the server refuses a refresh token for good. */
const ENDING_CODES = new Set(["INVALID_REFRESH_TOKEN", "REFRESH_TOKEN_REUSED", "UNAUTHENTICATED"]);
/** Refresh this long before the access token expires. */
const EARLY_SECONDS = 60;

/**
 * The access token lives only in memory. The refresh token is kept in memory and in
 * sessionStorage: a reload of this tab can resume the session, a new tab or a closed
 * browser cannot, and two tabs never hold (and race to rotate) the same refresh token: a
 * duplicated tab, which inherits a copy, sees that another tab holds it (resume).
 * Refreshes and switches are single-flight: concurrent callers share one request.
 */
export class Session {
  private access: string | null = null;
  private refreshToken: string | null;
  private expiresAt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inflight: Promise<boolean> | null = null;
  private generation = 0;
  private readonly channel: BroadcastChannel | null;
  /** Names this session (not secret) so a duplicated tab can ask whether it is held. */
  private mark: string | null = null;
  private listeners = new Set<Listener>();
  info: SessionInfo | null = null;
  /** Why the last session ended, when the server ended it (an error code). */
  endReason: string | null = null;
  /** Why the last refresh failed when it kept the session (the server unreachable, busy or
   * rate-limiting): the refresh token is still good, so the caller may try again. */
  refreshFailure: AppError | null = null;

  constructor(
    private readonly transport: AuthTransport = httpAuthTransport,
    private readonly storage: Storage | null = typeof sessionStorage === "undefined" ? null : sessionStorage,
    private readonly now: () => number = Date.now,
    channel: BroadcastChannel | null = typeof BroadcastChannel === "undefined" ? null : new BroadcastChannel(CHANNEL),
  ) {
    this.refreshToken = storage?.getItem(REFRESH_KEY) ?? null;
    this.channel = channel;
    this.channel?.addEventListener("message", (event: MessageEvent<Probe>) => {
      // Another tab resuming with this session's mark is a duplicate of this tab.
      if (event.data?.type === "probe" && this.info && event.data.mark === this.mark) {
        this.channel?.postMessage({ type: "held", mark: this.mark } satisfies Probe);
      }
    });
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
    this.establish(await this.transport.signUp(input), true);
  }

  async logIn(input: LogInInput): Promise<void> {
    this.establish(await this.transport.logIn(input), true);
  }

  /**
   * Resume from the refresh token this tab stored. False when it did not: signed out when
   * the token was refused (or another tab holds it), otherwise `canResume` still holds and
   * `refreshFailure` says why (a server restarting, a dropped network): try again later.
   * "Duplicate tab" copies sessionStorage, and two tabs rotating one refresh token revoke
   * each other's session, so a tab whose session another open tab holds starts signed out
   * (and leaves that session alone).
   */
  async resume(): Promise<boolean> {
    const mark = this.storage?.getItem(MARK_KEY) ?? null;
    if (mark && (await this.heldElsewhere(mark))) {
      this.refreshToken = null;
      this.storage?.removeItem(REFRESH_KEY);
      this.storage?.removeItem(MARK_KEY);
      this.endReason = "DUPLICATED_TAB";
      return false;
    }
    this.mark = mark;
    return this.refresh();
  }

  private heldElsewhere(mark: string): Promise<boolean> {
    const channel = this.channel;
    if (!channel) return Promise.resolve(false);
    return new Promise((resolve) => {
      const listen = (event: MessageEvent<Probe>) => {
        if (event.data?.type === "held" && event.data.mark === mark) finish(true);
      };
      const timer = setTimeout(() => finish(false), PROBE_MS);
      const finish = (held: boolean) => {
        clearTimeout(timer);
        channel.removeEventListener("message", listen);
        resolve(held);
      };
      channel.addEventListener("message", listen);
      channel.postMessage({ type: "probe", mark } satisfies Probe);
    });
  }

  /** A token that is valid for a while yet, refreshing first when it is about to expire. */
  async validAccessToken(): Promise<string | null> {
    if (this.access && this.now() < this.expiresAt - EARLY_SECONDS * 1000) return this.access;
    if (this.refreshToken && (await this.refresh())) return this.access;
    return this.access;
  }

  /** A refresh or organisation switch in flight, for callers that must wait for its token. */
  get pending(): Promise<boolean> | null {
    return this.inflight;
  }

  /** Rotate the tokens; false when it failed (and signed out when the server refused them). */
  refresh(): Promise<boolean> {
    if (!this.inflight) {
      this.inflight = this.exchange((token) => this.transport.refresh(token))
        .catch(() => false)
        .finally(() => {
          this.inflight = null;
        });
    }
    return this.inflight;
  }

  /** Trade the session for one in another of the user's organisations (after any refresh in
   * flight, which would otherwise present the same single-use token). Throws what the server
   * said; a NOT_FOUND leaves the current session as it was. */
  async switchOrganization(organizationId: string): Promise<void> {
    while (this.inflight) await this.inflight;
    let failure: unknown = null;
    const run = this.exchange((token) => this.transport.switchOrganization(token, organizationId), true).catch((error: unknown) => {
      failure = error;
      return false;
    });
    this.inflight = run.finally(() => {
      this.inflight = null;
    });
    if (!(await this.inflight)) throw failure ?? new AppError("UNAUTHENTICATED");
  }

  async logOut(): Promise<void> {
    const token = this.refreshToken;
    this.clear();
    if (token) await this.revoke(token);
  }

  /** Forget everything (the server refused our tokens: `reason` is its code, shown at log-in). */
  clear(reason: string | null = null): void {
    this.generation += 1;
    this.endReason = reason;
    this.refreshFailure = null;
    this.access = null;
    this.refreshToken = null;
    this.expiresAt = 0;
    this.storage?.removeItem(REFRESH_KEY);
    this.storage?.removeItem(MARK_KEY);
    this.mark = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.setInfo(null);
  }

  /** Present the refresh token once. A reply that arrives after a log-out (or another
   * clear) is not taken up: its new session is ended on the server instead. */
  private async exchange(
    call: (refreshToken: string) => Promise<SessionFieldsFragment>,
    fresh = false,
  ): Promise<boolean> {
    const token = this.refreshToken;
    if (!token) return false;
    const generation = this.generation;
    let payload: SessionFieldsFragment;
    try {
      payload = await call(token);
    } catch (error) {
      const code = (error as { code?: string }).code ?? "INTERNAL";
      // Only a refusal of the token ends the session; a blip, a busy server or a proxy's
      // error page keeps it for the next attempt.
      if (generation === this.generation) {
        if (ENDING_CODES.has(code)) this.clear(code);
        else this.refreshFailure = error instanceof AppError ? error : new AppError(code);
      }
      throw error;
    }
    if (generation !== this.generation) {
      void this.revoke(payload.refreshToken);
      return false;
    }
    this.establish(payload, fresh);
    return true;
  }

  private async revoke(refreshToken: string): Promise<void> {
    try {
      await this.transport.logOut(refreshToken);
    } catch {
      // Already signed out locally; the server session expires on its own.
    }
  }

  private establish(payload: SessionFieldsFragment, fresh = false): void {
    if (fresh || !this.mark) this.mark = randomMark();
    this.storage?.setItem(MARK_KEY, this.mark);
    this.endReason = null;
    this.refreshFailure = null;
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

/** 128 random bits as hex (crypto.randomUUID needs a secure context; plain-HTTP installs have none). */
function randomMark(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
