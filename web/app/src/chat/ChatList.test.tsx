import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import type { ReactNode } from "react";
import { Provider, type Client } from "urql";
import { fromValue, never } from "wonka";
import { afterEach, describe, expect, it } from "vitest";
import { ChatList } from "./ChatList";

afterEach(cleanup);

function fakeClient() {
  const chats = {
    pageInfo: { hasNextPage: false, endCursor: null },
    edges: [
      { node: { id: "c1", title: "", updatedAt: "2026-01-01T00:00:00Z" } },
      { node: { id: "c2", title: "Lighthouses", updatedAt: "2026-01-01T00:00:00Z" } },
    ],
  };
  const client = {
    executeQuery: (operation: unknown) => fromValue({ operation, data: { chats }, stale: false, hasNext: false }),
    executeMutation: () => never,
  };
  return client as unknown as Client;
}

const wrap = (client: Client) => ({ children }: { children: ReactNode }) => <Provider value={client}>{children}</Provider>;

describe("ChatList", () => {
  it("names an untitled chat in its link, its buttons and the delete dialog", () => {
    render(<ChatList activeId={null} version={0} />, { wrapper: wrap(fakeClient()) });
    expect(screen.getByRole("link", { name: "Untitled chat" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Rename Untitled chat" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Rename Lighthouses" })).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Delete Untitled chat" }));
    const dialog = screen.getByRole("dialog", { name: "Delete this chat?" });
    expect(within(dialog).getByText("“Untitled chat” and all its messages will be deleted.")).toBeTruthy();
  });
});
