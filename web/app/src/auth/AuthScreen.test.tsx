import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AppError } from "../api/errors";
import { AuthScreen } from "./AuthScreen";
import { Session, type AuthTransport } from "./session";

afterEach(cleanup);

function session(logIn: AuthTransport["logIn"]): Session {
  const fail = async () => Promise.reject(new AppError("INTERNAL"));
  return new Session({ signUp: fail, logIn, refresh: fail, switchOrganization: fail, logOut: async () => undefined }, null, Date.now, null);
}

describe("AuthScreen", () => {
  it("explains a refused log-in in plain words, with its code", async () => {
    const logIn = vi.fn(async () => Promise.reject(new AppError("INVALID_CREDENTIALS")));
    render(<AuthScreen session={session(logIn)} />);
    fireEvent.change(screen.getByLabelText("Email"), { target: { value: "ada@example.com" } });
    fireEvent.change(screen.getByLabelText("Password"), { target: { value: "wrong password" } });
    fireEvent.click(screen.getByRole("button", { name: "Log in" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("That email and password do not match an account.");
    expect(alert.textContent).toContain("(INVALID_CREDENTIALS)");
    expect(logIn).toHaveBeenCalledWith({ email: "ada@example.com", password: "wrong password" });
  });

  it("says why the last session ended", () => {
    const ended = session(vi.fn());
    ended.endReason = "DUPLICATED_TAB";
    render(<AuthScreen session={ended} />);
    expect(screen.getByRole("alert").textContent).toContain("copy of another signed-in tab");
  });

  it("switches to sign-up with the organisation field and the password hint", () => {
    render(<AuthScreen session={session(vi.fn())} />);
    fireEvent.click(screen.getByRole("button", { name: "Create an account" }));
    expect(screen.getByRole("heading", { name: "Create your account" })).toBeTruthy();
    expect(screen.getByLabelText(/Organisation name/)).toBeTruthy();
    expect(screen.getByText(/At least 10 characters/)).toBeTruthy();
  });
});
