import { afterEach, describe, expect, it, vi } from "vitest";
import type { SessionFieldsFragment } from "../generated/graphql";
import { AppError } from "../api/errors";
import { Session, type AuthTransport } from "./session";

function payload(n: number): SessionFieldsFragment {
  return {
    accessToken: `access-${n}`,
    refreshToken: `refresh-${n}`,
    expiresIn: 900,
    user: { id: "u1", email: "ada@example.com" },
    organization: { id: "o1", name: "Ada's", role: "ADMIN" },
  };
}

function transport(overrides: Partial<AuthTransport> = {}): AuthTransport {
  return {
    signUp: vi.fn(async () => payload(1)),
    logIn: vi.fn(async () => payload(1)),
    refresh: vi.fn(async () => payload(2)),
    logOut: vi.fn(async () => undefined),
    ...overrides,
  };
}

afterEach(() => sessionStorage.clear());

describe("Session", () => {
  it("keeps the access token in memory and only the refresh token in sessionStorage", async () => {
    const session = new Session(transport(), sessionStorage);
    await session.logIn({ email: "ada@example.com", password: "pw" });
    expect(session.accessToken).toBe("access-1");
    expect(sessionStorage.getItem("foundry.refreshToken")).toBe("refresh-1");
    expect(JSON.stringify({ ...sessionStorage })).not.toContain("access-1");
    session.clear();
  });

  it("shares one refresh between concurrent callers", async () => {
    const server = transport();
    const session = new Session(server, sessionStorage);
    await session.logIn({ email: "a@b.c", password: "pw" });
    const results = await Promise.all([session.refresh(), session.refresh(), session.refresh()]);
    expect(results).toEqual([true, true, true]);
    expect(server.refresh).toHaveBeenCalledTimes(1);
    expect(session.accessToken).toBe("access-2");
    session.clear();
  });

  it("resumes after a reload from the stored refresh token", async () => {
    sessionStorage.setItem("foundry.refreshToken", "refresh-1");
    const session = new Session(transport(), sessionStorage);
    expect(session.canResume).toBe(true);
    expect(await session.validAccessToken()).toBe("access-2");
    session.clear();
  });

  it("signs out when the server refuses the refresh token", async () => {
    const session = new Session(
      transport({ refresh: vi.fn(async () => Promise.reject(new AppError("REFRESH_TOKEN_REUSED"))) }),
      sessionStorage,
    );
    await session.logIn({ email: "a@b.c", password: "pw" });
    const seen: unknown[] = [];
    session.subscribe((info) => seen.push(info));
    expect(await session.refresh()).toBe(false);
    expect(session.accessToken).toBeNull();
    expect(sessionStorage.getItem("foundry.refreshToken")).toBeNull();
    expect(seen).toEqual([null]);
  });

  it("revokes the session on the server at log-out", async () => {
    const server = transport();
    const session = new Session(server, sessionStorage);
    await session.logIn({ email: "a@b.c", password: "pw" });
    await session.logOut();
    expect(server.logOut).toHaveBeenCalledWith("refresh-1");
    expect(session.accessToken).toBeNull();
  });
});
