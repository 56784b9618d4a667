import { createContext } from "react";
import type { Client } from "urql";
import { toAppError } from "../api/errors";
import { saysUnauthenticated } from "../api/sockets";
import { AnswerDocument } from "../generated/graphql";
import { applyAnswerEvent, failStream, startStream, stopStream, type AnswerStream } from "./stream";

const AUTH_CODES = new Set(["UNAUTHENTICATED", "TOKEN_EXPIRED"]);

/** The answer being written (or the last one written) and the chat it belongs to. */
export interface ChatAnswer {
  chatId: string;
  state: AnswerStream;
}

/**
 * The answer stream of one signed-in session in one organisation: one answer is written at
 * a time, and asking again replaces it. It outlives the chat screen (the Shell holds it:
 * going to the documents and back keeps the answer being written); detaching it (the Shell
 * unmounts: a log-out, a switch of organisation) stops it, as Stop does.
 */
export class AnswerStreams {
  private answer: ChatAnswer | null = null;
  private handle: { unsubscribe: () => void } | null = null;
  private claimed: AnswerStream | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly client: Client) {}

  /** The current answer (a new object after every change), or null before the first question. */
  get current(): ChatAnswer | null {
    return this.answer;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** True the first time it is asked about a finished answer (whichever screen is shown
   * then, or the next chat screen after one was away): it reloads what the answer changed. */
  claimFinished(state: AnswerStream): boolean {
    if (state.status !== "done" || this.claimed === state) return false;
    this.claimed = state;
    return true;
  }

  /** The returned function stops the answer being written. A pair, so React's StrictMode
   * can run it twice. */
  attach(): () => void {
    return () => this.stop();
  }

  ask(chatId: string, question: string, retried = false): void {
    this.handle?.unsubscribe();
    if (!retried) this.set({ chatId, state: startStream(question) });
    const update = (change: (state: AnswerStream) => AnswerStream) => {
      if (this.answer && this.answer.chatId === chatId) this.set({ ...this.answer, state: change(this.answer.state) });
    };
    let last: unknown = null;
    let over = false;
    const handle = this.client.subscription(AnswerDocument, { chatId, question }).subscribe((result) => {
      if (over) return;
      // urql keeps the previous data beside a later error, and repeats the last result
      // when the stream completes: each event is applied once, and an error wins.
      if (result.error) {
        const appError = toAppError(result.error);
        // A refused token arrives as the socket's close (4403, a network error to urql)
        // or, when the session ends between connecting and asking, as the answer's error.
        if (!retried && (AUTH_CODES.has(appError.code) || saysUnauthenticated(result.error.networkError))) {
          // The server refused the socket's token before it stored anything: the
          // connection pool is refreshing it, and the question is asked again once
          // (unless it was stopped or replaced meanwhile).
          over = true;
          setTimeout(() => {
            if (this.handle === handle) this.ask(chatId, question, true);
          }, 0);
          return;
        }
        update((state) => failStream(state, appError.code, appError.message));
        return;
      }
      if (!result.data || result.data === last) return;
      last = result.data;
      const event = result.data.answer;
      update((state) => applyAnswerEvent(state, event));
    });
    this.handle = handle;
  }

  stop(): void {
    this.handle?.unsubscribe();
    this.handle = null;
    if (!this.answer) return;
    const state = stopStream(this.answer.state);
    if (state !== this.answer.state) this.set({ ...this.answer, state });
  }

  private set(answer: ChatAnswer): void {
    this.answer = answer;
    for (const listener of this.listeners) listener();
  }
}

/** The Shell's answer stream; a chat screen outside one (tests) keeps a stream of its own. */
export const AnswerStreamsContext = createContext<AnswerStreams | null>(null);
