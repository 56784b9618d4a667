import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import type { ReactNode } from "react";
import { Provider, type Client } from "urql";
import { fromValue, never } from "wonka";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AppContext, type AppContextValue } from "../context";
import { MembersScreen } from "./MembersScreen";

afterEach(cleanup);

const me = { id: "u1", email: "ada@example.com" };
const colleague = { id: "u2", email: "bo@example.com" };

function fakeClient() {
  const organization = {
    id: "o1",
    name: "Lighthouse Society",
    role: "ADMIN",
    members: [
      { role: "ADMIN", joinedAt: "2026-01-01T00:00:00Z", user: me },
      { role: "ADMIN", joinedAt: "2026-01-02T00:00:00Z", user: colleague },
    ],
  };
  const mutations: unknown[] = [];
  const client = {
    executeQuery: (operation: unknown) => fromValue({ operation, data: { organization }, stale: false, hasNext: false }),
    executeMutation: vi.fn((request: { variables: unknown }) => {
      mutations.push(request.variables);
      return never;
    }),
  };
  return { client: client as unknown as Client, mutations };
}

const app = {
  session: {},
  info: { user: me, organization: { id: "o1", name: "Lighthouse Society", role: "ADMIN" } },
} as unknown as AppContextValue;

const wrap = (client: Client) => ({ children }: { children: ReactNode }) => (
  <Provider value={client}>
    <AppContext.Provider value={app}>{children}</AppContext.Provider>
  </Provider>
);

describe("MembersScreen", () => {
  it("asks before an admin lowers their own role, not before changing another's", () => {
    const fake = fakeClient();
    render(<MembersScreen />, { wrapper: wrap(fake.client) });
    fireEvent.change(screen.getByLabelText(`Role of ${colleague.email}`), { target: { value: "EDITOR" } });
    expect(fake.mutations).toEqual([{ userId: "u2", role: "EDITOR" }]);

    fireEvent.change(screen.getByLabelText(`Role of ${me.email}`), { target: { value: "VIEWER" } });
    expect(fake.mutations).toHaveLength(1);
    const dialog = screen.getByRole("dialog", { name: "Give up your admin role?" });
    fireEvent.click(within(dialog).getByRole("button", { name: "Change my role" }));
    expect(fake.mutations).toEqual([
      { userId: "u2", role: "EDITOR" },
      { userId: "u1", role: "VIEWER" },
    ]);
  });

  it("names the removal dialog after its own title, beside the role dialog", () => {
    const fake = fakeClient();
    render(<MembersScreen />, { wrapper: wrap(fake.client) });
    fireEvent.click(screen.getByRole("button", { name: `Remove ${colleague.email}` }));
    const dialog = screen.getByRole("dialog", { name: "Remove this member?" });
    expect(within(dialog).getByText(`${colleague.email} will lose access to this organisation at once.`)).toBeTruthy();
    fireEvent.click(within(dialog).getByRole("button", { name: "Remove" }));
    expect(fake.mutations).toEqual([{ userId: "u2" }]);
  });
});
