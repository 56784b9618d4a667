import { act, cleanup, renderHook } from "@testing-library/react";
import type { ReactNode } from "react";
import { Provider, type Client, type OperationResult } from "urql";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useDocumentEvents } from "./useDocumentEvents";

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
});

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

type Emit = (result: Partial<OperationResult>) => void;

function fakeClient() {
  const emits: Emit[] = [];
  const client = {
    subscription: vi.fn(() => ({
      subscribe: (callback: Emit) => {
        emits.push(callback);
        return { unsubscribe: () => undefined };
      },
    })),
  };
  return { client: client as unknown as Client, emits, subscription: client.subscription };
}

const wrap = (client: Client) => ({ children }: { children: ReactNode }) => <Provider value={client}>{children}</Provider>;

describe("useDocumentEvents", () => {
  it("waits out the server's retryAfter before opening a rate-limited stream again", () => {
    const fake = fakeClient();
    const onReopen = vi.fn();
    renderHook(() => useDocumentEvents(() => undefined, onReopen), { wrapper: wrap(fake.client) });
    expect(fake.subscription).toHaveBeenCalledTimes(1);
    // The server closed the socket: over the connections budget, back in 20 s.
    const closed = { code: 4429, reason: JSON.stringify({ code: "RATE_LIMITED", retryAfter: 20 }) };
    act(() => fake.emits[0]!({ error: { graphQLErrors: [], networkError: closed } as never }));
    act(() => vi.advanceTimersByTime(19_000));
    expect(fake.subscription).toHaveBeenCalledTimes(1);
    act(() => vi.advanceTimersByTime(1_000));
    expect(fake.subscription).toHaveBeenCalledTimes(2);
    expect(onReopen).toHaveBeenCalledTimes(1);
  });

  it("opens a stream that failed otherwise again after a short wait", () => {
    const fake = fakeClient();
    renderHook(() => useDocumentEvents(() => undefined, () => undefined), { wrapper: wrap(fake.client) });
    act(() => fake.emits[0]!({ error: { graphQLErrors: [], networkError: { code: 1006, reason: "" } } as never }));
    act(() => vi.advanceTimersByTime(1_000));
    expect(fake.subscription).toHaveBeenCalledTimes(2);
  });
});
