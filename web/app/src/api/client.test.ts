import { afterEach, describe, expect, it, vi } from "vitest";
import { Session, type AuthTransport } from "../auth/session";
import { authenticatedFetch } from "./client";

afterEach(() => vi.unstubAllGlobals());

const payload = (n: number) => ({
  accessToken: `access-${n}`,
  refreshToken: `refresh-${n}`,
  expiresIn: 900,
  user: { id: "u", email: "a@b.c" },
  organization: { id: "o", name: "O", role: "ADMIN" as const },
});

async function signedIn() {
  let refreshes = 0;
  const transport: AuthTransport = {
    signUp: async () => payload(1),
    logIn: async () => payload(1),
    refresh: async () => {
      refreshes += 1;
      return payload(1 + refreshes);
    },
    switchOrganization: async () => payload(99),
    logOut: async () => undefined,
  };
  const session = new Session(transport, null, Date.now, null);
  await session.logIn({ email: "a@b.c", password: "pw" });
  return { session, refreshes: () => refreshes };
}

const expired = () =>
  new Response(JSON.stringify({ errors: [{ message: "x", extensions: { code: "TOKEN_EXPIRED" } }] }), { status: 401 });
const ok = (token: string) => new Response(JSON.stringify({ data: { token } }), { status: 200 });

describe("authenticatedFetch", () => {
  it("refreshes once when requests sent with the same old token are refused one after the other", async () => {
    const { session, refreshes } = await signedIn();
    // Requests with the first token are held, and refused when the test says (the role changed).
    const held: (() => void)[] = [];
    const sentWith: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (_input: RequestInfo | URL, init?: RequestInit) => {
        const token = new Headers(init?.headers).get("authorization") ?? "";
        sentWith.push(token);
        if (token === "Bearer access-1") return new Promise<Response>((resolve) => held.push(() => resolve(expired())));
        return ok(token);
      }),
    );
    const send = authenticatedFetch(session, "o");
    const first = send("/graphql", { method: "POST" });
    const second = send("/graphql", { method: "POST" });
    await vi.waitFor(() => expect(held).toHaveLength(2));

    held[0]!();
    expect(await (await first).json()).toEqual({ data: { token: "Bearer access-2" } });
    expect(refreshes()).toBe(1);
    // The second refusal arrives after the refresh: it is sent again with the new token.
    held[1]!();
    expect(await (await second).json()).toEqual({ data: { token: "Bearer access-2" } });
    expect(refreshes()).toBe(1);
    expect(session.accessToken).toBe("access-2");
    expect(sentWith).toEqual(["Bearer access-1", "Bearer access-1", "Bearer access-2", "Bearer access-2"]);
    session.clear();
  });

  it("still refreshes when the refused token is the current one", async () => {
    const { session, refreshes } = await signedIn();
    vi.stubGlobal(
      "fetch",
      vi.fn(async (_input: RequestInfo | URL, init?: RequestInit) => {
        const token = new Headers(init?.headers).get("authorization") ?? "";
        return token === "Bearer access-1" ? expired() : ok(token);
      }),
    );
    const response = await authenticatedFetch(session, "o")("/graphql", { method: "POST" });
    expect(await response.json()).toEqual({ data: { token: "Bearer access-2" } });
    expect(refreshes()).toBe(1);
    session.clear();
  });
});
