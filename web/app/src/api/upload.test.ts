import { afterEach, describe, expect, it, vi } from "vitest";
import { Session } from "../auth/session";
import { uploadFile } from "./upload";

afterEach(() => vi.unstubAllGlobals());

describe("uploadFile", () => {
  it("sends nothing once the session has moved to another organisation", async () => {
    const opened = vi.fn();
    vi.stubGlobal("XMLHttpRequest", vi.fn(() => ({ open: opened })));
    const session = {
      info: { organization: { id: "o1" } },
      canResume: true,
      // The switch lands while the token is being made ready.
      validAccessToken: vi.fn(async () => {
        session.info = { organization: { id: "o2" } };
        return "access-of-o2";
      }),
    };
    const result = await uploadFile(session as unknown as Session, new File(["x"], "a.txt"), () => undefined);
    expect(result).toMatchObject({ ok: false, error: { code: "CANCELLED" } });
    expect(opened).not.toHaveBeenCalled();
  });
});

describe("uploadFile's refusals", () => {
  it("keeps the server's retryAfter when the upload is refused with RATE_LIMITED", async () => {
    const body = {
      data: null,
      errors: [{ message: "Too many uploads.", extensions: { code: "RATE_LIMITED", retryAfter: 7 } }],
    };
    class RefusingRequest {
      status = 0;
      responseText = "";
      upload = { onprogress: null };
      onload: (() => void) | null = null;
      onloadend: (() => void) | null = null;
      open() {}
      setRequestHeader() {}
      send() {
        this.status = 429;
        this.responseText = JSON.stringify(body);
        this.onload?.();
        this.onloadend?.();
      }
    }
    vi.stubGlobal("XMLHttpRequest", RefusingRequest);
    const session = {
      info: { organization: { id: "o1" } },
      canResume: true,
      accessToken: "access-1",
      validAccessToken: vi.fn(async () => "access-1"),
      refresh: vi.fn(async () => true),
    };
    const result = await uploadFile(session as unknown as Session, new File(["x"], "a.txt"), () => undefined);
    expect(result).toMatchObject({ ok: false, error: { code: "RATE_LIMITED", retryAfter: 7 } });
    expect(result.ok ? "" : result.error.message).toBe("Too many requests right now. Try again in 7 seconds.");
    expect(session.refresh).not.toHaveBeenCalled();
  });
});

describe("uploadFile's refused tokens", () => {
  it("refreshes once when uploads sent with the same old token are refused one after the other", async () => {
    let refreshes = 0;
    const payload = (n: number) => ({
      accessToken: `access-${n}`,
      refreshToken: `refresh-${n}`,
      expiresIn: 900,
      user: { id: "u", email: "a@b.c" },
      organization: { id: "o", name: "O", role: "ADMIN" as const },
    });
    const session = new Session(
      {
        signUp: async () => payload(1),
        logIn: async () => payload(1),
        refresh: async () => {
          refreshes += 1;
          return payload(1 + refreshes);
        },
        switchOrganization: async () => payload(99),
        logOut: async () => undefined,
      },
      null,
      Date.now,
      null,
    );
    await session.logIn({ email: "a@b.c", password: "pw" });
    const document = { id: "d", filename: "a.txt" };
    const held: (() => void)[] = [];
    const sentWith: string[] = [];
    class Request {
      status = 0;
      responseText = "";
      upload = { onprogress: null };
      token = "";
      onload: (() => void) | null = null;
      onloadend: (() => void) | null = null;
      open() {}
      setRequestHeader(name: string, value: string) {
        if (name === "authorization") this.token = value;
      }
      send() {
        sentWith.push(this.token);
        const reply = () => {
          const refused = this.token === "Bearer access-1";
          this.status = refused ? 401 : 200;
          this.responseText = JSON.stringify(
            refused
              ? { errors: [{ message: "x", extensions: { code: "TOKEN_EXPIRED" } }] }
              : { data: { uploadDocuments: [{ document, error: null }] } },
          );
          this.onload?.();
          this.onloadend?.();
        };
        if (this.token === "Bearer access-1") held.push(reply);
        else reply();
      }
    }
    vi.stubGlobal("XMLHttpRequest", Request);
    const first = uploadFile(session, new File(["x"], "a.txt"), () => undefined);
    const second = uploadFile(session, new File(["y"], "b.txt"), () => undefined);
    await vi.waitFor(() => expect(held).toHaveLength(2));
    held[0]!();
    expect(await first).toMatchObject({ ok: true });
    expect(refreshes).toBe(1);
    held[1]!();
    expect(await second).toMatchObject({ ok: true });
    expect(refreshes).toBe(1);
    expect(sentWith).toEqual(["Bearer access-1", "Bearer access-1", "Bearer access-2", "Bearer access-2"]);
    session.clear();
  });
});
