import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { Provider, type Client } from "urql";
import { never } from "wonka";
import { afterEach, describe, expect, it } from "vitest";
import { AppContext, type AppContextValue } from "./context";
import { Shell } from "./Shell";

afterEach(() => {
  cleanup();
  window.history.replaceState(null, "", "/");
});

const organization = { id: "o1", name: "Lighthouse Society", role: "VIEWER" as const };

/** Nothing is answered: every screen stays loading, which is all the navigation needs. */
const client = {
  executeQuery: () => never,
  executeMutation: () => never,
  executeSubscription: () => never,
} as unknown as Client;

const app = {
  session: { logOut: async () => undefined },
  info: { user: { id: "u1", email: "ada@example.com" }, organization },
} as unknown as AppContextValue;

describe("Shell", () => {
  it("leads any member, not only admins, to the account screen with the password form", () => {
    window.history.replaceState(null, "", "/chat");
    render(
      <Provider value={client}>
        <AppContext.Provider value={app}>
          <Shell />
        </AppContext.Provider>
      </Provider>,
    );
    const header = screen.getByRole("banner");
    fireEvent.click(within(header).getByRole("link", { name: "Account" }));
    expect(window.location.pathname).toBe("/account");
    expect(within(header).getByRole("link", { name: "Account" }).getAttribute("aria-current")).toBe("page");
    expect(screen.getByRole("heading", { name: "Your account" })).toBeTruthy();
    expect(screen.getByRole("heading", { name: "Change password" })).toBeTruthy();
  });
});
