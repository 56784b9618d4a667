import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { useState } from "react";
import { afterEach, describe, expect, it } from "vitest";
import type { SourceFieldsFragment } from "../generated/graphql";
import { SourcePanel } from "./SourcePanel";

afterEach(cleanup);

const first: SourceFieldsFragment = { index: 1, page: 3, snippet: "one", score: 0.9, document: { id: "d1", filename: "guide.pdf" } };
const second: SourceFieldsFragment = { index: 2, page: null, snippet: "two", score: 0.8, document: { id: "d2", filename: "faq.txt" } };

function Citations() {
  const [source, setSource] = useState<SourceFieldsFragment | null>(null);
  return (
    <div>
      <button type="button" onClick={() => setSource(first)}>[1]</button>
      <button type="button" onClick={() => setSource(second)}>[2]</button>
      {source && <SourcePanel source={source} onClose={() => setSource(null)} />}
    </div>
  );
}

function press(name: string) {
  const button = screen.getByRole("button", { name });
  button.focus();
  fireEvent.click(button);
  return button;
}

describe("SourcePanel", () => {
  it("takes focus when it opens and gives it back to the [n] button when Escape closes it", () => {
    render(<Citations />);
    const opener = press("[1]");
    expect(document.activeElement).toBe(screen.getByRole("heading", { name: "Source 1" }));
    fireEvent.keyDown(screen.getByTestId("source-panel"), { key: "Escape" });
    expect(screen.queryByTestId("source-panel")).toBeNull();
    expect(document.activeElement).toBe(opener);
  });

  it("returns focus to the last [n] pressed when another source replaced the first", () => {
    render(<Citations />);
    press("[1]");
    const latest = press("[2]");
    expect(document.activeElement).toBe(screen.getByRole("heading", { name: "Source 2" }));
    fireEvent.click(screen.getByRole("button", { name: "Close" }));
    expect(document.activeElement).toBe(latest);
  });
});
