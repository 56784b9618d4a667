import { describe, expect, it, vi } from "vitest";
import type { Client as WsClient, Sink } from "graphql-ws";
import { Session, type AuthTransport } from "../auth/session";
import { SocketPool } from "./sockets";

function fakeClient() {
  const sinks: Sink[] = [];
  const client = {
    subscribe: vi.fn((_: unknown, sink: Sink) => {
      sinks.push(sink);
      return () => undefined;
    }),
    dispose: vi.fn(),
  } as unknown as WsClient & { dispose: ReturnType<typeof vi.fn> };
  return { client, sinks };
}

const payload = (n: number) => ({
  accessToken: `access-${n}`,
  refreshToken: `refresh-${n}`,
  expiresIn: 900,
  user: { id: "u", email: "a@b.c" },
  organization: { id: "o", name: "O", role: "ADMIN" as const },
});

describe("SocketPool", () => {
  it("opens a new connection after a refresh and closes the old one when it is idle", async () => {
    const transport: AuthTransport = {
      signUp: async () => payload(1),
      logIn: async () => payload(1),
      refresh: async () => payload(2),
      logOut: async () => undefined,
    };
    const session = new Session(transport, null);
    await session.logIn({ email: "a@b.c", password: "pw" });
    const made: ReturnType<typeof fakeClient>[] = [];
    const pool = new SocketPool(session, () => {
      const fake = fakeClient();
      made.push(fake);
      return fake.client;
    });
    const sink = { next: vi.fn(), error: vi.fn(), complete: vi.fn() };

    pool.subscribe({ query: "subscription { a }" }, sink);
    pool.subscribe({ query: "subscription { b }" }, sink);
    expect(made).toHaveLength(1);

    await session.refresh();
    pool.subscribe({ query: "subscription { c }" }, sink);
    expect(made).toHaveLength(2);
    // The first connection still carries two streams: it stays open until they end.
    expect(made[0]!.client.dispose).not.toHaveBeenCalled();
    made[0]!.sinks[0]!.complete();
    made[0]!.sinks[1]!.error(new Error("TOKEN_EXPIRED"));
    expect(made[0]!.client.dispose).toHaveBeenCalledTimes(1);
    expect(made[1]!.client.dispose).not.toHaveBeenCalled();
    expect(sink.complete).toHaveBeenCalledTimes(1);
    expect(sink.error).toHaveBeenCalledTimes(1);
    session.clear();
  });
});
