import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import type { Session } from "../auth/session";
import { REVOKE_AFTER_MS, downloadDocument, downloadUrl, filenameFromContentDisposition, saveBlob } from "./download";

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/** URL.createObjectURL and revokeObjectURL replaced for one test. */
function stubObjectUrls(url = "blob:x") {
  const original = { create: URL.createObjectURL, revoke: URL.revokeObjectURL };
  const created = vi.fn((_: Blob) => url);
  const revoked = vi.fn((_: string) => undefined);
  URL.createObjectURL = created;
  URL.revokeObjectURL = revoked;
  onTestFinished(() => {
    URL.createObjectURL = original.create;
    URL.revokeObjectURL = original.revoke;
  });
  return { created, revoked };
}

function fakeSession(tokens: string[] = ["t1"], canResume = true) {
  const state = { access: tokens[0]!, organization: "o", refreshes: 0 };
  const session = {
    get accessToken() {
      return state.access;
    },
    get canResume() {
      return canResume;
    },
    get info() {
      return { user: { id: "u", email: "a@b.c" }, organization: { id: state.organization, name: "O", role: "VIEWER" } };
    },
    validAccessToken: async () => state.access,
    refresh: async () => {
      state.refreshes += 1;
      const next = tokens[state.refreshes];
      if (!next) return false;
      state.access = next;
      return true;
    },
  };
  return { session: session as unknown as Session, state };
}

const file = (body: string, disposition: string | null) =>
  new Response(body, {
    status: 200,
    headers: disposition ? { "content-type": "text/plain", "content-disposition": disposition } : { "content-type": "text/plain" },
  });

const refusal = (status: number, code: string, message = "refused") =>
  new Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), {
    status,
    headers: { "content-type": "application/json" },
  });

describe("filenameFromContentDisposition", () => {
  it("prefers filename* (RFC 5987, UTF-8) over the ASCII fallback", () => {
    expect(
      filenameFromContentDisposition(`attachment; filename="Re_sume_ _.pdf"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%E2%9C%93.pdf`),
    ).toBe("Résumé ✓.pdf");
    // Order does not matter, nor the case of the charset or the parameter name.
    expect(filenameFromContentDisposition(`attachment; FILENAME*=utf-8'en'na%C3%AFve.txt; filename="naive.txt"`)).toBe("naïve.txt");
    expect(filenameFromContentDisposition(`attachment; filename*=iso-8859-1''caf%E9.md`)).toBe("café.md");
  });

  it("reads a quoted filename, with escapes and semicolons inside the quotes", () => {
    expect(filenameFromContentDisposition(`attachment; filename="report; final.pdf"`)).toBe("report; final.pdf");
    expect(filenameFromContentDisposition(`attachment; filename="say \\"hi\\".txt"`)).toBe('say "hi".txt');
    expect(filenameFromContentDisposition("attachment; filename=plain.txt")).toBe("plain.txt");
  });

  it("falls back to filename when filename* cannot be read", () => {
    expect(filenameFromContentDisposition(`attachment; filename*=UTF-8''bad%E9%.txt; filename="good.txt"`)).toBe("good.txt");
    expect(filenameFromContentDisposition(`attachment; filename*=koi8-r''x.txt; filename="good.txt"`)).toBe("good.txt");
  });

  it("gives null when there is no file name", () => {
    expect(filenameFromContentDisposition(null)).toBeNull();
    expect(filenameFromContentDisposition("attachment")).toBeNull();
    expect(filenameFromContentDisposition(`attachment; filename=""`)).toBeNull();
    expect(filenameFromContentDisposition("inline; size=10")).toBeNull();
  });
});

describe("downloadUrl", () => {
  it("resolves downloadPath against the URL /graphql is sent to", () => {
    expect(downloadUrl("/documents/d1/file", "https://kb.example/chat/c1")).toBe("https://kb.example/documents/d1/file");
  });
});

describe("saveBlob", () => {
  it("clicks a temporary <a download> on an object URL and revokes the URL afterwards", () => {
    vi.useFakeTimers();
    const { created, revoked } = stubObjectUrls();
    const clicked: { href: string; download: string; attached: boolean }[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      clicked.push({ href: this.href, download: this.download, attached: document.body.contains(this) });
    });
    const blob = new Blob(["hello"]);
    saveBlob(blob, "a.txt");
    expect(created).toHaveBeenCalledWith(blob);
    expect(clicked).toEqual([{ href: "blob:x", download: "a.txt", attached: true }]);
    expect(document.querySelector("a[download]")).toBeNull();
    expect(revoked).not.toHaveBeenCalled();
    vi.advanceTimersByTime(REVOKE_AFTER_MS);
    expect(revoked).toHaveBeenCalledWith("blob:x");
  });
});

describe("downloadDocument", () => {
  it("sends the access token and saves the body under the server's name", async () => {
    const fetched = vi.fn(async () => file("hello", `attachment; filename="r_sum_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`));
    vi.stubGlobal("fetch", fetched);
    const save = vi.fn();
    const result = await downloadDocument(fakeSession().session, "/documents/d1/file", "fallback.pdf", undefined, "o", save);
    expect(result).toEqual({ ok: true, filename: "résumé.pdf" });
    const [url, init] = fetched.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe(new URL("/documents/d1/file", window.location.href).toString());
    expect((init.headers as Record<string, string>)["authorization"]).toBe("Bearer t1");
    const [blob, name] = save.mock.calls[0] as [Blob, string];
    expect(name).toBe("résumé.pdf");
    expect(await blob.text()).toBe("hello");
  });

  it("uses the document's name when the response gives none", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => file("x", null)));
    const save = vi.fn();
    expect(await downloadDocument(fakeSession().session, "/documents/d1/file", "notes.md", undefined, "o", save)).toEqual({
      ok: true,
      filename: "notes.md",
    });
    expect(save.mock.calls[0]![1]).toBe("notes.md");
  });

  it("refreshes an expired token once and sends again with the new one", async () => {
    const fetched = vi
      .fn()
      .mockResolvedValueOnce(refusal(401, "TOKEN_EXPIRED"))
      .mockResolvedValueOnce(file("x", `attachment; filename="a.txt"`));
    vi.stubGlobal("fetch", fetched);
    const { session, state } = fakeSession(["t1", "t2"]);
    const save = vi.fn();
    expect((await downloadDocument(session, "/documents/d1/file", "a.txt", undefined, "o", save)).ok).toBe(true);
    expect(state.refreshes).toBe(1);
    const sent = fetched.mock.calls.map(([, init]) => (init as RequestInit & { headers: Record<string, string> }).headers["authorization"]);
    expect(sent).toEqual(["Bearer t1", "Bearer t2"]);
    expect(save).toHaveBeenCalledTimes(1);
  });

  it("reports the refusal's code when the refresh fails", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => refusal(401, "TOKEN_EXPIRED")));
    const result = await downloadDocument(fakeSession(["t1"]).session, "/documents/d1/file", "a.txt", undefined, "o", vi.fn());
    expect(result.ok ? null : result.error.code).toBe("TOKEN_EXPIRED");
  });

  it("maps JSON refusals to their code and retryAfter, and other failures by status", async () => {
    const save = vi.fn();
    const run = async (response: Response) => {
      vi.stubGlobal("fetch", vi.fn(async () => response));
      const result = await downloadDocument(fakeSession().session, "/documents/d1/file", "a.txt", undefined, "o", save);
      if (result.ok) throw new Error("expected a failure");
      return result.error;
    };
    const missing = await run(refusal(404, "STORED_FILE_MISSING", "The document's stored file is missing."));
    expect(missing.code).toBe("STORED_FILE_MISSING");
    const limited = await run(
      new Response(JSON.stringify({ errors: [{ message: "slow down", extensions: { code: "RATE_LIMITED", retryAfter: 7 } }] }), {
        status: 429,
      }),
    );
    expect([limited.code, limited.retryAfter]).toEqual(["RATE_LIMITED", 7]);
    expect((await run(new Response("<html>Bad gateway</html>", { status: 502 }))).code).toBe("SERVICE_UNAVAILABLE");
    expect((await run(new Response("nope", { status: 404 }))).code).toBe("NOT_FOUND");
    expect(save).not.toHaveBeenCalled();
  });

  it("is NETWORK_ERROR when the request or the body fails", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))));
    const first = await downloadDocument(fakeSession().session, "/documents/d1/file", "a.txt", undefined, "o", vi.fn());
    expect(first.ok ? null : first.error.code).toBe("NETWORK_ERROR");
    const cut = file("x", null);
    vi.spyOn(cut, "blob").mockRejectedValue(new TypeError("network error"));
    vi.stubGlobal("fetch", vi.fn(async () => cut));
    const second = await downloadDocument(fakeSession().session, "/documents/d1/file", "a.txt", undefined, "o", vi.fn());
    expect(second.ok ? null : second.error.code).toBe("NETWORK_ERROR");
  });

  it("sends nothing once the session is in another organisation, and saves nothing once cancelled", async () => {
    const fetched = vi.fn(async () => file("x", null));
    vi.stubGlobal("fetch", fetched);
    const save = vi.fn();
    const { session, state } = fakeSession();
    state.organization = "other";
    const moved = await downloadDocument(session, "/documents/d1/file", "a.txt", undefined, "o", save);
    expect(moved.ok ? null : moved.error.code).toBe("CANCELLED");
    expect(fetched).not.toHaveBeenCalled();
    const controller = new AbortController();
    fetched.mockImplementationOnce(async () => {
      controller.abort();
      return file("x", null);
    });
    const cancelled = await downloadDocument(fakeSession().session, "/documents/d1/file", "a.txt", controller.signal, "o", save);
    expect(cancelled.ok ? null : cancelled.error.code).toBe("CANCELLED");
    expect(save).not.toHaveBeenCalled();
  });
});
