import { describe, expect, it } from "vitest";
import type { MessageFieldsFragment, SourceFieldsFragment } from "../generated/graphql";
import { applyAnswerEvent, failStream, splitCitations, startStream, stopStream, type AnswerEvent } from "./stream";

const source: SourceFieldsFragment = {
  index: 1,
  page: 2,
  snippet: "Otters hold hands while sleeping.",
  score: 0.8,
  document: { id: "d1", filename: "otters.md" },
};

const done: MessageFieldsFragment = {
  id: "m1",
  role: "ASSISTANT",
  content: "Otters hold hands [1].",
  degraded: true,
  createdAt: "2026-01-01T00:00:00+00:00",
  sources: [source],
};

function run(events: AnswerEvent[]) {
  return events.reduce(applyAnswerEvent, startStream("Do otters hold hands?"));
}

describe("answer stream assembly", () => {
  it("collects sources, appends tokens in order and ends with the stored message", () => {
    const partial = run([
      { __typename: "AnswerSources", sources: [source] },
      { __typename: "AnswerToken", text: "Otters " },
      { __typename: "AnswerToken", text: "hold hands" },
    ]);
    expect(partial.status).toBe("streaming");
    expect(partial.text).toBe("Otters hold hands");
    expect(partial.sources).toEqual([source]);
    const final = applyAnswerEvent(partial, { __typename: "AnswerDone", message: done });
    expect(final.status).toBe("done");
    expect(final.text).toBe("Otters hold hands [1].");
    expect(final.message?.degraded).toBe(true);
  });

  it("records an error with its code", () => {
    const state = run([{ __typename: "AnswerError", code: "LLM_UNAVAILABLE", errorMessage: "down" }]);
    expect(state.status).toBe("error");
    expect(state.error).toEqual({ code: "LLM_UNAVAILABLE", message: "down" });
  });

  it("ignores events after the user stopped the answer", () => {
    const stopped = stopStream(run([{ __typename: "AnswerToken", text: "Otters" }]));
    expect(stopped.status).toBe("stopped");
    expect(applyAnswerEvent(stopped, { __typename: "AnswerToken", text: " more" }).text).toBe("Otters");
    expect(failStream(stopped, "INTERNAL", "x").status).toBe("stopped");
  });

  it("splits citations out of the text", () => {
    expect(splitCitations("A [1] and B [2, 3].")).toEqual([
      { kind: "text", text: "A " },
      { kind: "citation", index: 1 },
      { kind: "text", text: " and B " },
      { kind: "citation", index: 2 },
      { kind: "citation", index: 3 },
      { kind: "text", text: "." },
    ]);
    expect(splitCitations("no citations")).toEqual([{ kind: "text", text: "no citations" }]);
  });
});
