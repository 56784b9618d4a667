import { afterEach, describe, expect, it, vi } from "vitest";
import { RefreshSessionDocument } from "../generated/graphql";
import { Session, httpAuthTransport } from "../auth/session";
import { postGraphQL } from "./http";

afterEach(() => {
  vi.unstubAllGlobals();
  sessionStorage.clear();
});

/** fetch answering every request as the server's rate limiter does (HTTP 429). */
function rateLimited(retryAfter: number) {
  const body = {
    data: null,
    errors: [{ message: "Too many requests.", extensions: { code: "RATE_LIMITED", retryAfter } }],
  };
  const fetcher = vi.fn(async () => new Response(JSON.stringify(body), { status: 429 }));
  vi.stubGlobal("fetch", fetcher);
  return fetcher;
}

describe("postGraphQL", () => {
  it("keeps the server's retryAfter when it refuses with RATE_LIMITED", async () => {
    rateLimited(42);
    const refused = postGraphQL(RefreshSessionDocument, { refreshToken: "refresh-1" });
    await expect(refused).rejects.toMatchObject({ code: "RATE_LIMITED", retryAfter: 42 });
    await expect(refused).rejects.toThrow("Try again in 42 seconds.");
  });

  it("gives a refused refresh's wait to the session, which keeps the token", async () => {
    const fetcher = rateLimited(120);
    sessionStorage.setItem("foundry.refreshToken", "refresh-1");
    const session = new Session(httpAuthTransport, sessionStorage, Date.now, null);
    expect(await session.resume()).toBe(false);
    expect(fetcher).toHaveBeenCalledTimes(1);
    expect(session.canResume).toBe(true);
    expect(session.refreshFailure).toMatchObject({ code: "RATE_LIMITED", retryAfter: 120 });
  });
});
