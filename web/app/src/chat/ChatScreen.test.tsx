import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import type { ReactNode } from "react";
import { Provider, type Client, type OperationResult } from "urql";
import { fromValue, never } from "wonka";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AnswerSubscription } from "../generated/graphql";
import { ChatScreen } from "./ChatScreen";

afterEach(cleanup);

type Operation = { query: { definitions: { name?: { value: string } }[] } };

function fakeClient() {
  let emit: ((result: Partial<OperationResult<AnswerSubscription>>) => void) | null = null;
  const unsubscribe = vi.fn();
  const data: Record<string, unknown> = {
    Chats: { chats: { edges: [{ node: { id: "c1", title: "Lighthouses", updatedAt: "2026-01-01T00:00:00Z" } }] } },
    ChatMessages: { chat: { id: "c1", title: "Lighthouses", messages: { edges: [] } } },
  };
  const client = {
    executeQuery: (operation: Operation) => {
      const name = operation.query.definitions[0]?.name?.value ?? "";
      return name in data ? fromValue({ operation, data: data[name], stale: false, hasNext: false }) : never;
    },
    executeMutation: () => never,
    subscription: vi.fn(() => ({
      subscribe: (callback: (result: Partial<OperationResult<AnswerSubscription>>) => void) => {
        emit = callback;
        return { unsubscribe };
      },
    })),
  };
  const send = (answer: AnswerSubscription["answer"]) => act(() => emit?.({ data: { answer } }));
  return { client: client as unknown as Client, unsubscribe, send, subscription: client.subscription };
}

const wrap = (client: Client) => ({ children }: { children: ReactNode }) => <Provider value={client}>{children}</Provider>;

describe("ChatScreen", () => {
  it("streams tokens into a polite live region and Stop cancels the subscription", async () => {
    const fake = fakeClient();
    render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "Who built it?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    expect(fake.subscription).toHaveBeenCalledWith(expect.anything(), { chatId: "c1", question: "Who built it?" });

    fake.send({ __typename: "AnswerToken", text: "Marisol " });
    fake.send({ __typename: "AnswerToken", text: "Teague" });
    const live = screen.getByTestId("streaming-answer");
    expect(live.getAttribute("aria-live")).toBe("polite");
    expect(live.textContent).toContain("Marisol Teague");

    fireEvent.click(screen.getByRole("button", { name: "Stop" }));
    expect(fake.unsubscribe).toHaveBeenCalled();
    expect(screen.getByText(/Stopped. The partial answer is not saved./)).toBeTruthy();
    fake.send({ __typename: "AnswerToken", text: " and more" });
    expect(live.textContent).not.toContain("and more");
    expect(screen.getByRole("button", { name: "Ask" })).toBeTruthy();
  });

  it("notes a degraded answer", async () => {
    const fake = fakeClient();
    render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "Q?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    fake.send({
      __typename: "AnswerDone",
      message: { id: "m2", role: "ASSISTANT", content: "Answer [1].", degraded: true, createdAt: "2026-01-01T00:00:00Z", sources: [] },
    });
    expect(screen.getByText(/AI model was unavailable/)).toBeTruthy();
  });
});
