import { afterEach, describe, expect, it, vi } from "vitest";
import { KEEP_ALIVE_MS, PONG_WAIT_MS, reconnecting, single } from "./sockets";

/** A WebSocket the test plays the server of: it sees what the client sends and answers. */
class FakeSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static made: FakeSocket[] = [];
  readyState = FakeSocket.CONNECTING;
  sent: { type: string }[] = [];
  closedWith: number | null = null;
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  constructor(
    readonly url: string,
    readonly protocol: string,
  ) {
    FakeSocket.made.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data) as { type: string });
  }
  /** A half-open socket: close() starts a handshake the dead peer never finishes. */
  close(code: number) {
    this.closedWith = code;
    this.readyState = FakeSocket.CLOSING;
  }
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
  }
  receive(message: object) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  sentTypes() {
    return this.sent.map((message) => message.type);
  }
}

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
  FakeSocket.made = [];
});

/** A subscription over a fresh client of `factory`, connected and acknowledged. */
async function connected(factory: typeof single) {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  vi.stubGlobal("WebSocket", FakeSocket);
  const client = factory(async () => ({ authorization: "Bearer access-1" }));
  const sink = { next: vi.fn(), error: vi.fn(), complete: vi.fn() };
  client.subscribe({ query: "subscription { a }" }, sink);
  await vi.advanceTimersByTimeAsync(0);
  const socket = FakeSocket.made[0]!;
  socket.open();
  await vi.advanceTimersByTimeAsync(0);
  socket.receive({ type: "connection_ack" });
  await vi.advanceTimersByTimeAsync(0);
  expect(socket.sentTypes()).toEqual(["connection_init", "subscribe"]);
  return { client, sink, socket };
}

describe("socket keep-alive", () => {
  it("pings the server and keeps a connection whose pongs come back", async () => {
    const { client, sink, socket } = await connected(single);
    const pings = () => socket.sentTypes().filter((type) => type === "ping").length;
    for (let round = 1; round <= 3; round += 1) {
      // A ping KEEP_ALIVE_MS after the socket opened or the last pong came...
      await vi.advanceTimersByTimeAsync(KEEP_ALIVE_MS - 1);
      expect(pings()).toBe(round - 1);
      await vi.advanceTimersByTimeAsync(1);
      expect(pings()).toBe(round);
      // ...answered just within PONG_WAIT_MS.
      await vi.advanceTimersByTimeAsync(PONG_WAIT_MS - 1);
      socket.receive({ type: "pong" });
    }
    await vi.advanceTimersByTimeAsync(PONG_WAIT_MS);
    expect(socket.closedWith).toBeNull();
    expect(sink.error).not.toHaveBeenCalled();
    void client.dispose();
  });

  it("fails an answer's stream when its socket stops answering pings", async () => {
    const { sink, socket } = await connected(single);
    await vi.advanceTimersByTimeAsync(KEEP_ALIVE_MS);
    expect(socket.sentTypes().at(-1)).toBe("ping");
    await vi.advanceTimersByTimeAsync(PONG_WAIT_MS);
    expect(socket.closedWith).not.toBeNull();
    expect(sink.error).toHaveBeenCalledTimes(1);
  });

  it("reconnects a listening stream whose socket stops answering pings", async () => {
    const { client, sink, socket } = await connected(reconnecting);
    await vi.advanceTimersByTimeAsync(KEEP_ALIVE_MS + PONG_WAIT_MS);
    expect(socket.closedWith).not.toBeNull();
    // After the first retry's wait (at most two seconds) a new socket subscribes again.
    await vi.advanceTimersByTimeAsync(2000);
    expect(FakeSocket.made).toHaveLength(2);
    const again = FakeSocket.made[1]!;
    again.open();
    await vi.advanceTimersByTimeAsync(0);
    again.receive({ type: "connection_ack" });
    await vi.advanceTimersByTimeAsync(0);
    expect(again.sentTypes()).toEqual(["connection_init", "subscribe"]);
    expect(sink.error).not.toHaveBeenCalled();
    void client.dispose();
  });
});
