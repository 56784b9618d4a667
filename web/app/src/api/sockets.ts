import { createClient, type Client as WsClient, type Sink, type SubscribePayload } from "graphql-ws";
import type { Session } from "../auth/session";
import { websocketUrl } from "./http";

type Factory = (connectionParams: () => Promise<Record<string, string>>) => WsClient;

interface Connection {
  client: WsClient;
  token: string | null;
  active: number;
}

/**
 * graphql-ws connections keyed by access token. The server checks a socket's
 * connection_init token before every operation, so once the session has refreshed,
 * new subscriptions go over a new connection carrying the new token; the old one
 * closes when its last subscription ends (an answer being streamed is not cut).
 */
export class SocketPool {
  private current: Connection | null = null;

  constructor(
    private readonly session: Session,
    private readonly factory: Factory = (connectionParams) =>
      createClient({ url: websocketUrl(), connectionParams, lazy: true, retryAttempts: 3 }),
  ) {}

  subscribe(payload: SubscribePayload, sink: Sink): () => void {
    const connection = this.connectionFor(this.session.accessToken);
    connection.active += 1;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      connection.active -= 1;
      this.retireIfIdle(connection);
    };
    const dispose = connection.client.subscribe(payload, {
      next: (value) => sink.next(value),
      error: (error) => {
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

  dispose(): void {
    void this.current?.client.dispose();
    this.current = null;
  }

  private connectionFor(token: string | null): Connection {
    if (this.current && this.current.token === token) return this.current;
    const previous = this.current;
    this.current = {
      token,
      active: 0,
      client: this.factory(async (): Promise<Record<string, string>> => {
        const fresh = await this.session.validAccessToken();
        return fresh ? { authorization: `Bearer ${fresh}` } : {};
      }),
    };
    if (previous) this.retireIfIdle(previous);
    return this.current;
  }

  private retireIfIdle(connection: Connection): void {
    if (connection !== this.current && connection.active === 0) void connection.client.dispose();
  }
}
