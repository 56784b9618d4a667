import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AnswerText } from "./AnswerText";

afterEach(cleanup);

const source = { index: 1, page: 3, snippet: "snippet", score: 0.9, document: { id: "d", filename: "guide.pdf" } };

describe("AnswerText", () => {
  it("turns [n] into a button that opens its source", () => {
    const onCite = vi.fn();
    render(<AnswerText text="Install it with make [1]." sources={[source]} onCite={onCite} />);
    const button = screen.getByRole("button", { name: "Source 1: guide.pdf, page 3" });
    fireEvent.click(button);
    expect(onCite).toHaveBeenCalledWith(source);
  });

  it("leaves a citation without a source as plain text", () => {
    render(<AnswerText text="See [2]." sources={[source]} onCite={() => undefined} />);
    expect(screen.queryByRole("button")).toBeNull();
    expect(screen.getByText("[2]")).toBeTruthy();
  });
});
