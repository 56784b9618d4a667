import { describe, expect, it, vi } from "vitest";
import type { Client as WsClient, Sink } from "graphql-ws";
import { Session, type AuthTransport } from "../auth/session";
import { SocketPool, saysUnauthenticated } from "./sockets";
import { AppError } from "./errors";
import { asksAQuestion } from "./client";
import { parse } from "graphql";

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
      switchOrganization: async () => payload(3),
      logOut: async () => undefined,
    };
    const session = new Session(transport, null, Date.now, null);
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

  it("refreshes once when the server refuses a socket's token, and opens the next stream with the new one", async () => {
    let refreshes = 0;
    let finish: () => void = () => undefined;
    const transport: AuthTransport = {
      signUp: async () => payload(1),
      logIn: async () => payload(1),
      refresh: () => {
        refreshes += 1;
        return new Promise((resolve) => (finish = () => resolve(payload(2))));
      },
      switchOrganization: async () => payload(3),
      logOut: async () => undefined,
    };
    const session = new Session(transport, null, Date.now, null);
    await session.logIn({ email: "a@b.c", password: "pw" });
    const made: ReturnType<typeof fakeClient>[] = [];
    const connecting: Promise<unknown>[] = [];
    const pool = new SocketPool(session, (connectionParams) => {
      const fake = fakeClient();
      made.push(fake);
      connecting.push(connectionParams()); // connection_init, as graphql-ws sends it
      return fake.client;
    });
    const sink = { next: vi.fn(), error: vi.fn(), complete: vi.fn() };
    pool.subscribe({ query: "subscription { a }" }, sink);
    pool.subscribe({ query: "subscription { b }" }, sink);
    await Promise.all(connecting);
    // The role changed: the token is refused before it expires here, on both streams.
    made[0]!.sinks[0]!.next({ data: null, errors: [{ message: "x", extensions: { code: "TOKEN_EXPIRED" } }] } as never);
    made[0]!.sinks[1]!.error({ code: 4403, reason: "Forbidden" } as never);
    expect(refreshes).toBe(1);
    // A stream opened while the refresh runs waits for it, then takes a new connection.
    pool.subscribe({ query: "subscription { c }" }, sink);
    expect(made).toHaveLength(1);
    finish();
    await session.pending;
    await Promise.resolve();
    expect(made).toHaveLength(2);
    expect(session.accessToken).toBe("access-2");
    session.clear();
  });

  it("tells a refused token from other failures", () => {
    expect(saysUnauthenticated({ code: 4403, reason: "Forbidden" })).toBe(true);
    expect(saysUnauthenticated([{ message: "x", extensions: { code: "UNAUTHENTICATED" } }])).toBe(true);
    expect(saysUnauthenticated({ errors: [{ message: "x", extensions: { code: "TOKEN_EXPIRED" } }] })).toBe(true);
    expect(saysUnauthenticated({ code: 1006, reason: "" })).toBe(false);
    expect(saysUnauthenticated([{ message: "x", extensions: { code: "RATE_LIMITED" } }])).toBe(false);
    expect(saysUnauthenticated(new Error("boom"))).toBe(false);
  });

  it("sends answers over the connection that never subscribes again by itself", () => {
    expect(asksAQuestion(parse("subscription Answer($c: ID!, $q: String!) { answer(chatId: $c, question: $q) { __typename } }"))).toBe(true);
    expect(asksAQuestion(parse("subscription { documentEvents { progress } }"))).toBe(false);
  });

  it("does not start a stream that waited for a switch to another organisation", async () => {
    let finish: () => void = () => undefined;
    const transport: AuthTransport = {
      signUp: async () => payload(1),
      logIn: async () => payload(1),
      refresh: async () => payload(2),
      switchOrganization: () =>
        new Promise((resolve) => (finish = () => resolve({ ...payload(3), organization: { id: "o2", name: "P", role: "ADMIN" } }))),
      logOut: async () => undefined,
    };
    const session = new Session(transport, null, Date.now, null);
    await session.logIn({ email: "a@b.c", password: "pw" });
    const made: ReturnType<typeof fakeClient>[] = [];
    const pool = new SocketPool(
      session,
      () => {
        const fake = fakeClient();
        made.push(fake);
        return fake.client;
      },
      "o",
    );
    const sink = { next: vi.fn(), error: vi.fn(), complete: vi.fn() };
    const switched = session.switchOrganization("o2");
    await Promise.resolve();
    pool.subscribe({ query: "subscription { a }" }, sink);
    finish();
    await switched;
    await Promise.resolve();
    expect(session.accessToken).toBe("access-3");
    expect(made).toHaveLength(0);
    expect(sink.error).toHaveBeenCalledTimes(1);
    expect(sink.error.mock.calls[0]![0]).toBeInstanceOf(AppError);
    expect(sink.error.mock.calls[0]![0].code).toBe("CANCELLED");
    session.clear();
  });

  it("does not send another organisation's token when a connection of this one reconnects", async () => {
    const transport: AuthTransport = {
      signUp: async () => payload(1),
      logIn: async () => payload(1),
      refresh: async () => payload(2),
      switchOrganization: async () => ({ ...payload(3), organization: { id: "o2", name: "P", role: "ADMIN" } }),
      logOut: async () => undefined,
    };
    const session = new Session(transport, null, Date.now, null);
    await session.logIn({ email: "a@b.c", password: "pw" });
    const params: (() => Promise<Record<string, string>>)[] = [];
    const pool = new SocketPool(
      session,
      (connectionParams) => {
        params.push(connectionParams);
        return fakeClient().client;
      },
      "o",
    );
    pool.subscribe({ query: "subscription { a }" }, { next: vi.fn(), error: vi.fn(), complete: vi.fn() });
    expect(await params[0]!()).toEqual({ authorization: "Bearer access-1" });
    await session.switchOrganization("o2");
    await expect(params[0]!()).rejects.toMatchObject({ code: "CANCELLED" });
    session.clear();
  });
});
