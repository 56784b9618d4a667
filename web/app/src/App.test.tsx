import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AppError } from "./api/errors";
import { App } from "./App";
import { Session, type AuthTransport } from "./auth/session";

afterEach(() => {
  cleanup();
  vi.useRealTimers();
  sessionStorage.clear();
});

/** A tab reloaded with its refresh token stored, whose refreshes fail as given (in turn). */
function reloadedTab(...failures: string[]) {
  sessionStorage.setItem("foundry.refreshToken", "refresh-1");
  const refresh = vi.fn(async () => {
    throw new AppError(failures.shift() ?? "INVALID_REFRESH_TOKEN");
  });
  const transport = { refresh, logOut: vi.fn(async () => undefined) } as unknown as AuthTransport;
  return { session: new Session(transport, sessionStorage, Date.now, null), refresh };
}

/** Let the resume's promises settle. */
const settle = () => act(async () => {
  await vi.advanceTimersByTimeAsync(0);
});

describe("App", () => {
  it("keeps the session and offers to try again when the server cannot be reached", async () => {
    const { session, refresh } = reloadedTab("NETWORK_ERROR");
    render(<App session={session} />);
    expect(await screen.findByRole("heading", { name: "Cannot reach the server" })).toBeTruthy();
    expect(screen.queryByRole("heading", { name: "Log in" })).toBeNull();
    expect(screen.getByRole("alert").textContent).toContain("(NETWORK_ERROR)");
    expect(sessionStorage.getItem("foundry.refreshToken")).toBe("refresh-1");

    // Tried again: this time the server answers, and refuses the token for good.
    fireEvent.click(screen.getByRole("button", { name: "Try again" }));
    expect(await screen.findByRole("heading", { name: "Log in" })).toBeTruthy();
    expect(refresh).toHaveBeenCalledTimes(2);
    expect(screen.getByRole("alert").textContent).toContain("(INVALID_REFRESH_TOKEN)");
  });

  it("tries again by itself, waiting longer each time, while the server restarts", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { session, refresh } = reloadedTab("SERVICE_UNAVAILABLE", "NETWORK_ERROR");
    render(<App session={session} />);
    await settle();
    expect(screen.getByRole("heading", { name: "Cannot reach the server" })).toBeTruthy();
    expect(refresh).toHaveBeenCalledTimes(1);
    await act(async () => {
      await vi.advanceTimersByTimeAsync(2000);
    });
    expect(refresh).toHaveBeenCalledTimes(2);
    expect(screen.getByRole("heading", { name: "Cannot reach the server" })).toBeTruthy();
    await act(async () => {
      await vi.advanceTimersByTimeAsync(3000);
    });
    expect(refresh).toHaveBeenCalledTimes(2);
    await act(async () => {
      await vi.advanceTimersByTimeAsync(1000);
    });
    expect(refresh).toHaveBeenCalledTimes(3);
    expect(screen.getByRole("heading", { name: "Log in" })).toBeTruthy();
  });

  it("goes to the log-in screen at once when the token is refused", async () => {
    const { session } = reloadedTab("REFRESH_TOKEN_REUSED");
    render(<App session={session} />);
    expect(await screen.findByRole("heading", { name: "Log in" })).toBeTruthy();
    expect(screen.queryByRole("heading", { name: "Cannot reach the server" })).toBeNull();
  });

  it("lets the user give up the kept session and log in", async () => {
    const { session } = reloadedTab("SERVICE_UNAVAILABLE");
    render(<App session={session} />);
    fireEvent.click(await screen.findByRole("button", { name: "Log in again instead" }));
    expect(screen.getByRole("heading", { name: "Log in" })).toBeTruthy();
    expect(sessionStorage.getItem("foundry.refreshToken")).toBeNull();
  });
});
