import { createClient, type Client as WsClient, type ClientOptions, type Sink, type SubscribePayload } from "graphql-ws";
import type { Session } from "../auth/session";
import { AppError } from "./errors";
import { websocketUrl } from "./http";

export type Factory = (connectionParams: () => Promise<Record<string, string>>) => WsClient;

interface Connection {
  client: WsClient;
  /** The session's token when the connection was made (new streams look connections up by it). */
  token: string | null;
  /** The token it last sent (connection_init, again at each reconnect). */
  sent: string | null;
  active: number;
}

/**
 * "reconnected" when a connection that reconnects by itself is back after a drop: its
 * streams resumed, but what was sent while it was down is lost (useDocumentEvents reloads).
 */
export const socketEvents = new EventTarget();

/** The server closes a socket whose token it refuses with 4403, and says TOKEN_EXPIRED or
 * UNAUTHENTICATED in an operation's errors once a session was revoked or changed. */
const AUTH_CLOSE = 4403;
const AUTH_CODES = new Set(["UNAUTHENTICATED", "TOKEN_EXPIRED"]);
/** The longest wait between reconnection attempts, in seconds. */
const MAX_RETRY_SECONDS = 10;

interface ErrorLike {
  extensions?: Record<string, unknown> | null;
}

/** Whether what a subscription received (an error, a close event, a result) says the
 * socket's token was refused. */
export function saysUnauthenticated(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  if ("code" in value && (value as { code: unknown }).code === AUTH_CLOSE) return true;
  const errors = Array.isArray(value) ? value : (value as { errors?: unknown }).errors;
  return (
    Array.isArray(errors) &&
    errors.some((error: ErrorLike | null) => AUTH_CODES.has(String(error?.extensions?.["code"] ?? "")))
  );
}

/** How often a connection pings the server (graphql-transport-ws Ping), in milliseconds. */
export const KEEP_ALIVE_MS = 15_000;
/** How long a ping waits for its pong before the connection is taken for dead. */
export const PONG_WAIT_MS = 10_000;
const OPEN = 1;

/**
 * A client whose connection pings the server every KEEP_ALIVE_MS and is terminated when a
 * pong does not come within PONG_WAIT_MS (graphql-ws's own ping/pong recipe). Without it a
 * socket left half-open (a laptop that slept, a network that changed) is never noticed:
 * its streams wait for ever. Terminating closes it at once (4499, not waiting for a close
 * handshake a dead peer never answers), so what the client does on a drop happens: a
 * reconnecting client reconnects, a single one fails its streams.
 */
export function watchedClient(options: ClientOptions): WsClient {
  const on = options.on ?? {};
  let socket: unknown = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const client: WsClient = createClient({
    ...options,
    keepAlive: KEEP_ALIVE_MS,
    on: {
      ...on,
      opened: (opened) => {
        socket = opened;
        on.opened?.(opened);
      },
      ping: (received, payload) => {
        if (!received) {
          const pinged = socket;
          clearTimeout(timer);
          timer = setTimeout(() => {
            if (pinged === socket && (pinged as { readyState?: number } | null)?.readyState === OPEN) client.terminate();
          }, PONG_WAIT_MS);
        }
        on.ping?.(received, payload);
      },
      pong: (received, payload) => {
        if (received) clearTimeout(timer);
        on.pong?.(received, payload);
      },
      closed: (event) => {
        clearTimeout(timer);
        socket = null;
        on.closed?.(event);
      },
    },
  });
  return client;
}

/**
 * Subscriptions that survive a dropped connection: graphql-ws reconnects (waits grow to
 * MAX_RETRY_SECONDS, never longer) and subscribes them again. Right for streams that only
 * listen, such as document events; wrong for `answer`, which would ask its question twice.
 */
export const reconnecting: Factory = (connectionParams) =>
  watchedClient({
    url: websocketUrl(),
    connectionParams,
    lazy: true,
    retryAttempts: Infinity,
    retryWait: async (retries) => {
      const seconds = Math.min(2 ** retries, MAX_RETRY_SECONDS);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000 + Math.random() * 1000));
    },
    // A refused token is not retried with the same token: the pool refreshes it instead.
    shouldRetry: (closeEvent) => !saysUnauthenticated(closeEvent),
    on: {
      connected: (_socket, _payload, wasRetry) => {
        if (wasRetry) socketEvents.dispatchEvent(new Event("reconnected"));
      },
    },
  });

/** Subscriptions that end with an error when their connection drops (or is found dead). */
export const single: Factory = (connectionParams) =>
  watchedClient({ url: websocketUrl(), connectionParams, lazy: true, retryAttempts: 0 });

/**
 * graphql-ws connections keyed by access token. The server checks a socket's
 * connection_init token before every operation, so once the session has refreshed,
 * new subscriptions go over a new connection carrying the new token; the old one
 * closes when its last subscription ends (an answer being streamed is not cut).
 *
 * When the server refuses a connection's token before it expires here (a role change,
 * a revoked session), the pool refreshes the session once, and subscriptions opened
 * from then on wait for that refresh: a subscriber that opens again after the error gets
 * a connection with the new token.
 *
 * Bound to one organisation, as authenticatedFetch is: once the session is in another
 * (a switch this subscription waited for), a stream fails with CANCELLED instead of
 * starting, and no connection sends the new organisation's token.
 */
export class SocketPool {
  private current: Connection | null = null;

  constructor(
    private readonly session: Session,
    private readonly factory: Factory = reconnecting,
    private readonly organizationId: string | null = null,
  ) {}

  private moved(): boolean {
    return this.organizationId !== null && this.session.info?.organization.id !== this.organizationId;
  }

  subscribe(payload: SubscribePayload, sink: Sink): () => void {
    let cancelled = false;
    let stop: (() => void) | null = null;
    const start = () => {
      if (!cancelled) stop = this.start(payload, sink);
    };
    const pending = this.session.pending;
    if (pending) void pending.then(start);
    else start();
    return () => {
      cancelled = true;
      stop?.();
    };
  }

  dispose(): void {
    void this.current?.client.dispose();
    this.current = null;
  }

  private start(payload: SubscribePayload, sink: Sink): () => void {
    if (this.moved()) {
      sink.error(new AppError("CANCELLED"));
      return () => undefined;
    }
    const connection = this.connectionFor(this.session.accessToken);
    connection.active += 1;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      connection.active -= 1;
      this.retireIfIdle(connection);
    };
    const refused = (value: unknown) => {
      // Once per token: the first refusal of the token still current refreshes it; later
      // ones (the same token, or one already replaced) share that refresh.
      if (saysUnauthenticated(value) && connection.sent !== null && connection.sent === this.session.accessToken) {
        void this.session.refresh();
      }
    };
    const dispose = connection.client.subscribe(payload, {
      next: (value) => {
        refused(value);
        sink.next(value);
      },
      error: (error) => {
        refused(error);
        release();
        sink.error(error);
      },
      complete: () => {
        release();
        sink.complete();
      },
    });
    return () => {
      dispose();
      release();
    };
  }

  private connectionFor(token: string | null): Connection {
    if (this.current && this.current.token === token) return this.current;
    const previous = this.current;
    const connection: Connection = {
      token,
      sent: null,
      active: 0,
      client: this.factory(async (): Promise<Record<string, string>> => {
        const fresh = await this.session.validAccessToken();
        // A reconnect after a switch would otherwise present the other organisation's token.
        if (this.moved()) throw new AppError("CANCELLED");
        connection.sent = fresh;
        return fresh ? { authorization: `Bearer ${fresh}` } : {};
      }),
    };
    this.current = connection;
    if (previous) this.retireIfIdle(previous);
    return connection;
  }

  private retireIfIdle(connection: Connection): void {
    if (connection !== this.current && connection.active === 0) void connection.client.dispose();
  }
}
