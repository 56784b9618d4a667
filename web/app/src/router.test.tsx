import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { parseRoute, pathOf, useRoute } from "./router";

afterEach(() => {
  cleanup();
  window.history.replaceState(null, "", "/");
});

function Where() {
  const route = useRoute();
  return <p>{route.name === "chat" ? `chat:${route.chatId ?? "none"}` : route.name}</p>;
}

describe("router", () => {
  it("reads chat addresses, encoded or not", () => {
    expect(parseRoute("/chat")).toEqual({ name: "chat", chatId: null });
    expect(parseRoute("/chat/a%2Fb")).toEqual({ name: "chat", chatId: "a/b" });
    expect(parseRoute(pathOf({ name: "chat", chatId: "x y" }))).toEqual({ name: "chat", chatId: "x y" });
  });

  it("reads the account address, and only that one", () => {
    expect(parseRoute("/account")).toEqual({ name: "account" });
    expect(parseRoute("/account/")).toEqual({ name: "account" });
    expect(parseRoute(pathOf({ name: "account" }))).toEqual({ name: "account" });
    expect(parseRoute("/accounts")).toEqual({ name: "documents" });
  });

  it("opens the chat screen without a chat for an address that is not valid encoding", () => {
    expect(parseRoute("/chat/abc%")).toEqual({ name: "chat", chatId: null });
    expect(parseRoute("/chat/%E0%A4%A")).toEqual({ name: "chat", chatId: null });
    window.history.replaceState(null, "", "/chat/abc%");
    render(<Where />);
    expect(screen.getByText("chat:none")).toBeTruthy();
  });
});
