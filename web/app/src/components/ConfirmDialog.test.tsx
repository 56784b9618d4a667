import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { ConfirmDialog } from "./ConfirmDialog";

afterEach(cleanup);

const noop = () => undefined;

describe("ConfirmDialog", () => {
  it("names each dialog after its own title when a screen has two", () => {
    render(
      <>
        <ConfirmDialog open title="Give up your admin role?" body="a" confirmLabel="Change" onConfirm={noop} onCancel={noop} />
        <ConfirmDialog open title="Remove this member?" body="b" confirmLabel="Remove" onConfirm={noop} onCancel={noop} />
      </>,
    );
    expect(screen.getByRole("dialog", { name: "Give up your admin role?" })).toBeTruthy();
    expect(screen.getByRole("dialog", { name: "Remove this member?" })).toBeTruthy();
    const ids = screen.getAllByRole("dialog").map((dialog) => dialog.getAttribute("aria-labelledby"));
    expect(new Set(ids).size).toBe(2);
  });
});
