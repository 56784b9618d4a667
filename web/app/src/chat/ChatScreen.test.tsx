import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import type { ReactNode } from "react";
import { Provider, type Client, type OperationResult } from "urql";
import { fromValue, never } from "wonka";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AnswerSubscription } from "../generated/graphql";
import { AnswerStreams, AnswerStreamsContext } from "./answerStreams";
import { ChatScreen } from "./ChatScreen";

afterEach(cleanup);

type Operation = { query: { definitions: { name?: { value: string } }[] } };

const noMore = { hasNextPage: false, endCursor: null };

function message(id: string, role: "USER" | "ASSISTANT", content: string) {
  return { id, role, content, degraded: false, createdAt: "2026-01-01T00:00:00Z", sources: [] };
}

function page(messages: ReturnType<typeof message>[], endCursor: string | null) {
  const pageInfo = endCursor ? { hasNextPage: true, endCursor } : noMore;
  return { chat: { id: "c1", title: "Lighthouses", messages: { pageInfo, edges: messages.map((node) => ({ node })) } } };
}

function fakeClient(laterPages: Record<string, ReturnType<typeof page>> = {}, firstPage = page([], null)) {
  let emit: ((result: Partial<OperationResult<AnswerSubscription>>) => void) | null = null;
  const unsubscribe = vi.fn();
  const data: Record<string, unknown> = {
    Chats: {
      chats: { pageInfo: noMore, edges: [{ node: { id: "c1", title: "Lighthouses", updatedAt: "2026-01-01T00:00:00Z" } }] },
    },
    ChatMessages: firstPage,
  };
  const reloads: string[] = []; // the queries asked for again from the server (network-only)
  const client = {
    executeQuery: (operation: Operation, context?: { requestPolicy?: string }) => {
      const name = operation.query.definitions[0]?.name?.value ?? "";
      if (context?.requestPolicy === "network-only") reloads.push(name);
      return name in data ? fromValue({ operation, data: data[name], stale: false, hasNext: false }) : never;
    },
    query: vi.fn((_: unknown, variables: { after?: string }) => ({
      toPromise: async () => ({ data: laterPages[variables.after ?? ""] }),
    })),
    executeMutation: () => never,
    subscription: vi.fn(() => ({
      subscribe: (callback: (result: Partial<OperationResult<AnswerSubscription>>) => void) => {
        emit = callback;
        return { unsubscribe };
      },
    })),
  };
  const setFirstPage = (next: ReturnType<typeof page>) => {
    data.ChatMessages = next;
  };
  const send = (answer: AnswerSubscription["answer"]) => act(() => emit?.({ data: { answer } }));
  const emitRaw = (result: Partial<OperationResult<AnswerSubscription>>) => act(() => emit?.(result));
  return { client: client as unknown as Client, unsubscribe, send, emitRaw, subscription: client.subscription, query: client.query, setFirstPage, reloads };
}

const wrap = (client: Client) => ({ children }: { children: ReactNode }) => <Provider value={client}>{children}</Provider>;

/** As the Shell provides it: an answer stream that outlives the chat screen. */
const wrapShared = (client: Client, answers: AnswerStreams) => ({ children }: { children: ReactNode }) => (
  <Provider value={client}>
    <AnswerStreamsContext.Provider value={answers}>{children}</AnswerStreamsContext.Provider>
  </Provider>
);

function ask(question: string) {
  fireEvent.change(screen.getByLabelText("Your question"), { target: { value: question } });
  fireEvent.click(screen.getByRole("button", { name: "Ask" }));
}

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

  it("shows a stopped or failed question once when the chat's messages hold it (reloaded)", async () => {
    // The server stored the question before answering; a reload (a rename, coming back) brings it.
    const fake = fakeClient({}, page([message("m1", "USER", "Who built it?")], null));
    render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    await screen.findByText("Who built it?");
    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "Who built it?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    fake.send({ __typename: "AnswerToken", text: "Marisol" });
    const messages = () => screen.getByRole("list", { name: "Messages" });
    const questions = () => Array.from(messages().querySelectorAll(".message.user")).map((li) => li.textContent);
    expect(questions()).toEqual(["Who built it?"]);

    fireEvent.click(screen.getByRole("button", { name: "Stop" }));
    expect(screen.getByText(/Stopped. The partial answer is not saved./)).toBeTruthy();
    expect(questions()).toEqual(["Who built it?"]);

    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "Who built it?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    const error = { graphQLErrors: [{ message: "Unexpected error.", extensions: { code: "INTERNAL" } }] };
    fake.emitRaw({ error: error as never });
    expect((await screen.findByRole("alert")).textContent).toContain("(INTERNAL)");
    expect(questions()).toEqual(["Who built it?"]);
    // The partial answer stays after its question.
    expect(messages().lastElementChild?.textContent).not.toContain("Who built it?");
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
    // The stored answer is read back, and the chats (an untitled chat is named after its question).
    await waitFor(() => expect(fake.reloads).toEqual(expect.arrayContaining(["ChatMessages", "Chats"])));
  });

  it("ends the answer on a mid-stream error without repeating the last token", async () => {
    const fake = fakeClient();
    render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "Who built it?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    const token = { answer: { __typename: "AnswerToken" as const, text: "Marisol" } };
    fake.emitRaw({ data: token });
    // urql keeps the last data beside the error, then repeats the result when the stream completes.
    const error = { graphQLErrors: [{ message: "Unexpected error.", extensions: { code: "INTERNAL" } }] };
    fake.emitRaw({ data: token, error: error as never });
    fake.emitRaw({ data: token, error: error as never });
    const live = screen.getByTestId("streaming-answer");
    expect(live.textContent).toBe("Marisol");
    expect(screen.getByRole("alert").textContent).toContain("(INTERNAL)");
    expect(screen.getByRole("button", { name: "Ask" })).toBeTruthy();
  });

  it("asks once more when the socket's token was refused, then reports a second refusal", async () => {
    const fake = fakeClient();
    render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "Who built it?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    const refused = { graphQLErrors: [{ message: "expired", extensions: { code: "TOKEN_EXPIRED" } }] };
    fake.emitRaw({ error: refused as never });
    await waitFor(() => expect(fake.subscription).toHaveBeenCalledTimes(2));
    expect(fake.subscription).toHaveBeenLastCalledWith(expect.anything(), { chatId: "c1", question: "Who built it?" });
    expect(screen.queryByRole("alert")).toBeNull();
    fake.emitRaw({ error: refused as never });
    expect((await screen.findByRole("alert")).textContent).toContain("(TOKEN_EXPIRED)");
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(fake.subscription).toHaveBeenCalledTimes(2);
  });

  it("asks once more when the socket was closed for its token (4403)", async () => {
    const fake = fakeClient();
    render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "Who built it?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    fake.emitRaw({ error: { graphQLErrors: [], networkError: { code: 4403, reason: "Forbidden" } } as never });
    await waitFor(() => expect(fake.subscription).toHaveBeenCalledTimes(2));
    fake.send({ __typename: "AnswerToken", text: "Marisol" });
    expect(screen.getByTestId("streaming-answer").textContent).toContain("Marisol");
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("says the answer was rate-limited when the server closes the socket with 4429", async () => {
    const fake = fakeClient();
    render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "Who built it?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    const closed = { code: 4429, reason: JSON.stringify({ code: "RATE_LIMITED", retryAfter: 30 }) };
    fake.emitRaw({ error: { graphQLErrors: [], networkError: closed } as never });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("(RATE_LIMITED)");
    expect(alert.textContent).toMatch(/Too many requests/);
    expect(alert.textContent).not.toMatch(/Cannot reach the server/);
    expect(fake.subscription).toHaveBeenCalledTimes(1);
  });

  it("shows the newest messages of a chat longer than one page", async () => {
    const fake = fakeClient(
      { p1: page([message("m3", "USER", "Third question?")], "p2"), p2: page([message("m4", "ASSISTANT", "The newest answer.")], null) },
      page([message("m1", "USER", "First question?"), message("m2", "ASSISTANT", "First answer.")], "p1"),
    );
    render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    expect(await screen.findByText("The newest answer.")).toBeTruthy();
    const items = screen.getByRole("list", { name: "Messages" }).querySelectorAll("li");
    expect(Array.from(items, (item) => item.textContent)).toEqual([
      "First question?",
      "First answer.",
      "Third question?",
      "The newest answer.",
    ]);
  });

  it("keeps writing the answer while another screen is shown, and shows it stored on return", async () => {
    const fake = fakeClient();
    const answers = new AnswerStreams(fake.client);
    const wrapper = wrapShared(fake.client, answers);
    const first = render(<ChatScreen chatId="c1" />, { wrapper });
    ask("Who built it?");
    fake.send({ __typename: "AnswerToken", text: "Marisol " });
    first.unmount(); // the user goes to the documents
    expect(fake.unsubscribe).not.toHaveBeenCalled();
    fake.send({ __typename: "AnswerToken", text: "Teague" });

    const second = render(<ChatScreen chatId="c1" />, { wrapper });
    expect(screen.getByTestId("streaming-answer").textContent).toContain("Marisol Teague");
    expect(screen.getByRole("button", { name: "Stop" })).toBeTruthy();
    second.unmount();

    const stored = message("m2", "ASSISTANT", "Marisol Teague.");
    fake.send({ __typename: "AnswerDone", message: stored });
    fake.setFirstPage(page([message("m1", "USER", "Who built it?"), stored], null));
    render(<ChatScreen chatId="c1" />, { wrapper });
    const messages = screen.getByRole("list", { name: "Messages" });
    await waitFor(() =>
      expect(Array.from(messages.querySelectorAll("li"), (item) => item.textContent)).toEqual(["Who built it?", "Marisol Teague."]),
    );
    expect(screen.queryByTestId("streaming-answer")).toBeNull();
    expect(screen.getByRole("button", { name: "Ask" })).toBeTruthy();
    expect(fake.unsubscribe).not.toHaveBeenCalled();
  });

  it("reloads the messages when the answer finished while the screen was away", async () => {
    const fake = fakeClient();
    const answers = new AnswerStreams(fake.client);
    const wrapper = wrapShared(fake.client, answers);
    const first = render(<ChatScreen chatId="c1" />, { wrapper });
    ask("Who built it?");
    first.unmount();
    const stored = message("m2", "ASSISTANT", "Marisol Teague.");
    fake.send({ __typename: "AnswerDone", message: stored });
    expect(fake.reloads).toEqual([]);
    // Coming back, the chat's messages are first read as they were (before the question).
    render(<ChatScreen chatId="c1" />, { wrapper });
    expect(screen.getByTestId("streaming-answer").textContent).toBe("Marisol Teague.");
    fake.setFirstPage(page([message("m1", "USER", "Who built it?"), stored], null));
    // Both the messages and the chats (the chat is named after its first question).
    await waitFor(() => expect(fake.reloads).toContain("ChatMessages"));
    await waitFor(() => expect(fake.reloads).toContain("Chats"));
    const messages = screen.getByRole("list", { name: "Messages" });
    await waitFor(() =>
      expect(Array.from(messages.querySelectorAll("li"), (item) => item.textContent)).toEqual(["Who built it?", "Marisol Teague."]),
    );
  });

  it("stops the Shell's answer when the Shell goes (a log-out, a switch of organisation)", () => {
    const fake = fakeClient();
    const answers = new AnswerStreams(fake.client);
    const detach = answers.attach();
    render(<ChatScreen chatId="c1" />, { wrapper: wrapShared(fake.client, answers) });
    ask("Who built it?");
    fake.send({ __typename: "AnswerToken", text: "Marisol" });
    act(() => detach());
    expect(fake.unsubscribe).toHaveBeenCalled();
    expect(screen.getByText(/Stopped. The partial answer is not saved./)).toBeTruthy();
  });

  it("stops the answer when the screen goes without the Shell's stream", () => {
    const fake = fakeClient();
    const view = render(<ChatScreen chatId="c1" />, { wrapper: wrap(fake.client) });
    ask("Who built it?");
    view.unmount();
    expect(fake.unsubscribe).toHaveBeenCalled();
  });

  it("says an answer is being written in another chat, and links to it", () => {
    const fake = fakeClient();
    const answers = new AnswerStreams(fake.client);
    const wrapper = wrapShared(fake.client, answers);
    const view = render(<ChatScreen chatId="c1" />, { wrapper });
    ask("Who built it?");
    view.rerender(<ChatScreen chatId="c2" />);
    expect(screen.getByRole("status").textContent).toContain("An answer is still being written in another chat");
    expect(screen.getByRole("link", { name: "another chat" }).getAttribute("href")).toBe("/chat/c1");
    fireEvent.change(screen.getByLabelText("Your question"), { target: { value: "And when?" } });
    expect((screen.getByRole("button", { name: "Ask" }) as HTMLButtonElement).disabled).toBe(true);
    fake.send({ __typename: "AnswerDone", message: message("m2", "ASSISTANT", "Marisol.") });
    expect(screen.queryByRole("status")).toBeNull();
    expect((screen.getByRole("button", { name: "Ask" }) as HTMLButtonElement).disabled).toBe(false);
  });
});
