import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import type { ReactNode } from "react";
import { Provider, type Client, type OperationResult } from "urql";
import { fromValue, never } from "wonka";
import { afterEach, describe, expect, it, vi } from "vitest";
import { socketEvents } from "../api/sockets";
import { AppContext, type AppContextValue } from "../context";
import type { DocumentEventsSubscription, DocumentFieldsFragment } from "../generated/graphql";
import { DocumentsScreen } from "./DocumentsScreen";

afterEach(cleanup);

type Operation = { query: { definitions: { name?: { value: string } }[] } };
type Emit = (result: Partial<OperationResult<DocumentEventsSubscription>>) => void;

function doc(id: string, filename: string, status: DocumentFieldsFragment["status"]): DocumentFieldsFragment {
  return {
    id,
    filename,
    status,
    mimeType: "text/plain",
    sizeBytes: 10,
    errorCode: null,
    pageCount: 1,
    chunkCount: 1,
    createdAt: "2026-01-01T00:00:00Z",
    processedAt: null,
  };
}

function connection(listed: DocumentFieldsFragment[], endCursor: string | null = null) {
  return {
    totalCount: listed.length,
    pageInfo: { hasNextPage: endCursor !== null, endCursor },
    edges: listed.map((node) => ({ node })),
  };
}

function fakeClient(listed: DocumentFieldsFragment[], later: Record<string, ReturnType<typeof connection>> = {}) {
  const emits: Emit[] = [];
  const policies: string[] = [];
  const firstPage = { current: connection(listed) };
  const client = {
    executeQuery: (operation: Operation, options?: { requestPolicy?: string }) => {
      policies.push(options?.requestPolicy ?? "");
      return fromValue({ operation, data: { documents: firstPage.current }, stale: false, hasNext: false });
    },
    query: (_: unknown, variables: { after?: string }) => ({
      toPromise: async () => ({ data: { documents: later[variables.after ?? ""] } }),
    }),
    executeMutation: () => never,
    subscription: vi.fn(() => ({
      subscribe: (callback: Emit) => {
        emits.push(callback);
        return { unsubscribe: () => undefined };
      },
    })),
  };
  return { client: client as unknown as Client, emits, policies, subscription: client.subscription, firstPage };
}

const app = {
  session: {},
  info: { user: { id: "u", email: "a@b.c" }, organization: { id: "o", name: "O", role: "VIEWER" } },
} as unknown as AppContextValue;

const wrap = (client: Client) => ({ children }: { children: ReactNode }) => (
  <Provider value={client}>
    <AppContext.Provider value={app}>{children}</AppContext.Provider>
  </Provider>
);

const event = (document: DocumentFieldsFragment, deleted = false) => ({
  data: { documentEvents: { progress: null, deleted, document } },
});

describe("DocumentsScreen", () => {
  it("drops a document deleted elsewhere and announces one that became ready", async () => {
    const fake = fakeClient([doc("d1", "old.txt", "READY"), doc("d2", "new.txt", "PROCESSING")]);
    render(<DocumentsScreen />, { wrapper: wrap(fake.client) });
    const list = await screen.findByRole("list", { name: "Documents" });
    // The server reports a deletion as a FAILED document with deleted: true.
    act(() => fake.emits[0]!({ ...event({ ...doc("d1", "old.txt", "FAILED"), errorCode: "DELETED" }, true) }));
    expect(within(list).queryByText("old.txt")).toBeNull();
    act(() => fake.emits[0]!(event(doc("d2", "new.txt", "READY"))));
    expect(within(list).getByText("new.txt").closest("li")?.getAttribute("data-status")).toBe("READY");
    expect(screen.getByText("new.txt is ready.")).toBeTruthy();
  });

  it("opens the stream again after an error, and reloads the list it may have missed", async () => {
    const fake = fakeClient([doc("d1", "a.txt", "READY")]);
    render(<DocumentsScreen />, { wrapper: wrap(fake.client) });
    await screen.findByRole("list", { name: "Documents" });
    const before = fake.policies.filter((policy) => policy === "network-only").length;
    act(() => fake.emits[0]!({ error: { graphQLErrors: [{ message: "x", extensions: { code: "TOKEN_EXPIRED" } }] } as never }));
    await waitFor(() => expect(fake.subscription).toHaveBeenCalledTimes(2), { timeout: 3000 });
    await waitFor(() => expect(fake.policies.filter((policy) => policy === "network-only").length).toBeGreaterThan(before));
  });

  it("reloads the list when its connection is back after a drop", async () => {
    const fake = fakeClient([doc("d1", "a.txt", "READY")]);
    render(<DocumentsScreen />, { wrapper: wrap(fake.client) });
    await screen.findByRole("list", { name: "Documents" });
    const before = fake.policies.filter((policy) => policy === "network-only").length;
    act(() => void socketEvents.dispatchEvent(new Event("reconnected")));
    expect(fake.policies.filter((policy) => policy === "network-only").length).toBe(before + 1);
    expect(fake.subscription).toHaveBeenCalledTimes(1);
  });

  it("drops the pages shown after the first when the first page ends elsewhere", async () => {
    const fake = fakeClient([], { c1: connection([doc("d2", "second.txt", "READY")]) });
    fake.firstPage.current = connection([doc("d1", "first.txt", "READY")], "c1");
    render(<DocumentsScreen />, { wrapper: wrap(fake.client) });
    fireEvent.click(await screen.findByRole("button", { name: "Show more" }));
    expect(await screen.findByText("second.txt")).toBeTruthy();
    // A document arrives: the first page now ends with another one, and the page after
    // "c1" would skip a document. It goes; "Show more" reads on from the new end.
    fake.firstPage.current = connection([doc("d0", "new.txt", "READY"), doc("d1", "first.txt", "READY")], "c0");
    act(() => void socketEvents.dispatchEvent(new Event("reconnected")));
    await screen.findByText("new.txt");
    expect(screen.queryByText("second.txt")).toBeNull();
    expect(screen.getByRole("button", { name: "Show more" })).toBeTruthy();
  });
});
