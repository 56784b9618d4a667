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
    switchOrganization: vi.fn(async () => ({ ...payload(3), organization: { id: "o2", name: "Team", role: "EDITOR" as const } })),
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

  it("switches organisation after a refresh in flight, with the newest refresh token", async () => {
    const server = transport();
    const session = new Session(server, sessionStorage);
    await session.logIn({ email: "a@b.c", password: "pw" });
    const refreshed = session.refresh();
    await session.switchOrganization("o2");
    expect(await refreshed).toBe(true);
    expect(server.switchOrganization).toHaveBeenCalledWith("refresh-2", "o2");
    expect(session.accessToken).toBe("access-3");
    expect(session.info?.organization.id).toBe("o2");
    session.clear();
  });

  it("keeps the session when the organisation is not found", async () => {
    const server = transport({ switchOrganization: vi.fn(async () => Promise.reject(new AppError("NOT_FOUND"))) });
    const session = new Session(server, sessionStorage);
    await session.logIn({ email: "a@b.c", password: "pw" });
    await expect(session.switchOrganization("elsewhere")).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect(session.accessToken).toBe("access-1");
    expect(await session.refresh()).toBe(true);
    session.clear();
  });

  it("keeps the session through a proxy's error page or a busy server", async () => {
    for (const code of ["INTERNAL", "NETWORK_ERROR", "SERVICE_UNAVAILABLE", "RATE_LIMITED"]) {
      const session = new Session(transport({ refresh: vi.fn(async () => Promise.reject(new AppError(code))) }), sessionStorage);
      await session.logIn({ email: "a@b.c", password: "pw" });
      expect(await session.refresh()).toBe(false);
      expect(session.accessToken).toBe("access-1");
      expect(sessionStorage.getItem("foundry.refreshToken")).toBe("refresh-1");
      session.clear();
    }
  });

  it("does not take up a refresh that answers after log-out, and ends its session on the server", async () => {
    let answer: (value: SessionFieldsFragment) => void = () => undefined;
    const server = transport({ refresh: vi.fn(() => new Promise<SessionFieldsFragment>((resolve) => (answer = resolve))) });
    const session = new Session(server, sessionStorage);
    await session.logIn({ email: "a@b.c", password: "pw" });
    const refreshed = session.refresh();
    await session.logOut();
    answer(payload(2));
    expect(await refreshed).toBe(false);
    expect(session.info).toBeNull();
    expect(session.accessToken).toBeNull();
    expect(sessionStorage.getItem("foundry.refreshToken")).toBeNull();
    expect(server.logOut).toHaveBeenCalledWith("refresh-2");
  });

  it("records why the server ended the session", async () => {
    const session = new Session(
      transport({ refresh: vi.fn(async () => Promise.reject(new AppError("REFRESH_TOKEN_REUSED"))) }),
      sessionStorage,
    );
    await session.logIn({ email: "a@b.c", password: "pw" });
    await session.refresh();
    expect(session.endReason).toBe("REFRESH_TOKEN_REUSED");
  });

  it("starts a duplicated tab signed out, leaving the original tab's session alone", async () => {
    const original = new Session(transport(), sessionStorage, Date.now, new BroadcastChannel("test-tabs"));
    await original.logIn({ email: "a@b.c", password: "pw" });
    // "Duplicate tab" copies sessionStorage into the new tab.
    const copy = new Map(Object.entries({ ...sessionStorage }));
    const storage = {
      getItem: (key: string) => copy.get(key) ?? null,
      setItem: (key: string, value: string) => void copy.set(key, value),
      removeItem: (key: string) => void copy.delete(key),
    } as unknown as Storage;
    const server = transport();
    const duplicate = new Session(server, storage, Date.now, new BroadcastChannel("test-tabs"));
    expect(duplicate.canResume).toBe(true);
    expect(await duplicate.resume()).toBe(false);
    expect(server.refresh).not.toHaveBeenCalled();
    expect(duplicate.endReason).toBe("DUPLICATED_TAB");
    expect(copy.get("foundry.refreshToken")).toBeUndefined();
    expect(original.accessToken).toBe("access-1");

    // A reload of the original tab finds nobody else holding it, and resumes.
    original.clear();
    sessionStorage.setItem("foundry.refreshToken", "refresh-1");
    sessionStorage.setItem("foundry.sessionMark", "mark");
    const reloaded = new Session(transport(), sessionStorage, Date.now, new BroadcastChannel("test-tabs"));
    expect(await reloaded.resume()).toBe(true);
    expect(reloaded.accessToken).toBe("access-2");
    reloaded.clear();
  });

  it("says why a resume failed when it keeps the session, and resumes on a later try", async () => {
    sessionStorage.setItem("foundry.refreshToken", "refresh-1");
    const refresh = vi.fn().mockRejectedValueOnce(new AppError("SERVICE_UNAVAILABLE")).mockResolvedValueOnce(payload(2));
    const session = new Session(transport({ refresh }), sessionStorage, Date.now, null);
    expect(await session.resume()).toBe(false);
    expect(session.canResume).toBe(true);
    expect(session.refreshFailure?.code).toBe("SERVICE_UNAVAILABLE");
    expect(session.endReason).toBeNull();
    expect(await session.resume()).toBe(true);
    expect(session.refreshFailure).toBeNull();
    expect(session.accessToken).toBe("access-2");
    session.clear();
  });

  it("forgets the token when a resume is refused, with no failure to try again", async () => {
    sessionStorage.setItem("foundry.refreshToken", "refresh-1");
    const session = new Session(
      transport({ refresh: vi.fn(async () => Promise.reject(new AppError("INVALID_REFRESH_TOKEN"))) }),
      sessionStorage,
      Date.now,
      null,
    );
    expect(await session.resume()).toBe(false);
    expect(session.canResume).toBe(false);
    expect(session.refreshFailure).toBeNull();
    expect(session.endReason).toBe("INVALID_REFRESH_TOKEN");
  });
});
