import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import type { ReactNode } from "react";
import { Provider, type Client, type OperationResult } from "urql";
import { fromValue, never } from "wonka";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
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
    downloadPath: `/documents/${id}/file`,
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

const wrap = (client: Client, value: AppContextValue = app) => ({ children }: { children: ReactNode }) => (
  <Provider value={client}>
    <AppContext.Provider value={value}>{children}</AppContext.Provider>
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

/** A signed-in viewer whose access token is "t1". */
const signedIn = {
  session: {
    accessToken: "t1",
    canResume: false,
    info: app.info,
    validAccessToken: async () => "t1",
    refresh: async () => false,
  },
  info: app.info,
} as unknown as AppContextValue;

/** fetch replaced for one test; object URLs and anchor clicks recorded. */
function stubBrowser(respond: () => Promise<Response>) {
  const fetched = vi.fn((_url: string, _init: RequestInit) => respond());
  vi.stubGlobal("fetch", fetched);
  const original = { create: URL.createObjectURL, revoke: URL.revokeObjectURL };
  const created = vi.fn((_: Blob) => "blob:saved");
  URL.createObjectURL = created;
  URL.revokeObjectURL = vi.fn();
  const saved: { href: string; download: string }[] = [];
  const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
    saved.push({ href: this.href, download: this.download });
  });
  onTestFinished(() => {
    vi.unstubAllGlobals();
    click.mockRestore();
    URL.createObjectURL = original.create;
    URL.revokeObjectURL = original.revoke;
  });
  return { fetched, created, saved };
}

describe("DocumentsScreen downloads", () => {
  it("offers viewers a download that sends the access token and saves under the server's name", async () => {
    const browser = stubBrowser(async () =>
      new Response("body", {
        headers: { "content-disposition": `attachment; filename="r_sum_.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt` },
      }),
    );
    const fake = fakeClient([doc("d1", "résumé.txt", "READY")]);
    render(<DocumentsScreen />, { wrapper: wrap(fake.client, signedIn) });
    fireEvent.click(await screen.findByRole("button", { name: "Download résumé.txt" }));
    await waitFor(() => expect(browser.saved).toHaveLength(1));
    const [url, init] = browser.fetched.mock.calls[0]!;
    expect(url).toBe(new URL("/documents/d1/file", window.location.href).toString());
    expect(new Headers(init.headers).get("authorization")).toBe("Bearer t1");
    expect(browser.saved[0]).toEqual({ href: "blob:saved", download: "résumé.txt" });
    expect(await browser.created.mock.calls[0]![0].text()).toBe("body");
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("shows a 404 refusal as NOT_FOUND and saves nothing", async () => {
    const browser = stubBrowser(async () =>
      new Response(JSON.stringify({ errors: [{ message: "No such document.", extensions: { code: "NOT_FOUND" } }] }), {
        status: 404,
        headers: { "content-type": "application/json" },
      }),
    );
    const fake = fakeClient([doc("d1", "gone.txt", "READY")]);
    render(<DocumentsScreen />, { wrapper: wrap(fake.client, signedIn) });
    fireEvent.click(await screen.findByRole("button", { name: "Download gone.txt" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("It no longer exists, or you cannot see it.");
    expect(alert.textContent).toContain("(NOT_FOUND)");
    expect(browser.saved).toEqual([]);
  });

  it("disables the button while the file is on its way", async () => {
    let finish: (response: Response) => void = () => undefined;
    const browser = stubBrowser(() => new Promise<Response>((resolve) => (finish = resolve)));
    const fake = fakeClient([doc("d1", "big.pdf", "READY"), doc("d2", "other.pdf", "READY")]);
    render(<DocumentsScreen />, { wrapper: wrap(fake.client, signedIn) });
    const button = (await screen.findByRole("button", { name: "Download big.pdf" })) as HTMLButtonElement;
    fireEvent.click(button);
    await waitFor(() => expect(browser.fetched).toHaveBeenCalledTimes(1));
    expect(button.disabled).toBe(true);
    expect(button.textContent).toBe("Downloading…");
    // A second click does nothing; other documents can still be downloaded.
    fireEvent.click(button);
    expect(browser.fetched).toHaveBeenCalledTimes(1);
    expect((screen.getByRole("button", { name: "Download other.pdf" }) as HTMLButtonElement).disabled).toBe(false);
    await act(async () => finish(new Response("pdf", { headers: { "content-disposition": `attachment; filename="big.pdf"` } })));
    await waitFor(() => expect(button.disabled).toBe(false));
    expect(browser.saved).toEqual([{ href: "blob:saved", download: "big.pdf" }]);
  });
});
