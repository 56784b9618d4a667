import type { AnswerSubscription, MessageFieldsFragment, SourceFieldsFragment } from "../generated/graphql";

export type AnswerEvent = AnswerSubscription["answer"];

export type StreamStatus = "idle" | "waiting" | "streaming" | "done" | "error" | "stopped";

export interface AnswerStream {
  status: StreamStatus;
  question: string;
  text: string;
  sources: SourceFieldsFragment[];
  message: MessageFieldsFragment | null;
  error: { code: string; message: string } | null;
}

export const idleStream: AnswerStream = {
  status: "idle",
  question: "",
  text: "",
  sources: [],
  message: null,
  error: null,
};

export function startStream(question: string): AnswerStream {
  return { ...idleStream, status: "waiting", question };
}

/** Fold one `answer` subscription event into the answer being assembled. */
export function applyAnswerEvent(state: AnswerStream, event: AnswerEvent): AnswerStream {
  if (state.status === "done" || state.status === "error" || state.status === "stopped") return state;
  switch (event.__typename) {
    case "AnswerSources":
      return { ...state, sources: event.sources };
    case "AnswerToken":
      return { ...state, status: "streaming", text: state.text + event.text };
    case "AnswerDone":
      return {
        ...state,
        status: "done",
        message: event.message,
        text: event.message.content,
        sources: event.message.sources,
      };
    case "AnswerError":
      return { ...state, status: "error", error: { code: event.code, message: event.errorMessage } };
  }
}

export function stopStream(state: AnswerStream): AnswerStream {
  return state.status === "waiting" || state.status === "streaming" ? { ...state, status: "stopped" } : state;
}

export function failStream(state: AnswerStream, code: string, message: string): AnswerStream {
  return state.status === "waiting" || state.status === "streaming"
    ? { ...state, status: "error", error: { code, message } }
    : state;
}

export type AnswerPart = { kind: "text"; text: string } | { kind: "citation"; index: number };

/** Split an answer into text and `[n]` citation markers (`[1, 2]` and `[1][2]` both work). */
export function splitCitations(text: string): AnswerPart[] {
  const parts: AnswerPart[] = [];
  const pattern = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
  let last = 0;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    if (match.index > last) parts.push({ kind: "text", text: text.slice(last, match.index) });
    for (const n of match[1]!.split(",")) parts.push({ kind: "citation", index: Number(n.trim()) });
    last = match.index + match[0].length;
  }
  if (last < text.length) parts.push({ kind: "text", text: text.slice(last) });
  return parts;
}
