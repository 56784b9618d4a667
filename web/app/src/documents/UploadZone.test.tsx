import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AppContext, type AppContextValue } from "../context";
import { UploadZone } from "./UploadZone";

const uploadFile = vi.hoisted(() => vi.fn());
vi.mock("../api/upload", () => ({ uploadFile }));

afterEach(() => {
  cleanup();
  uploadFile.mockReset();
});

const app = { session: {}, info: { organization: { id: "o1" } } } as unknown as AppContextValue;
const uploaded = { id: "d1", filename: "guide.pdf" };

describe("UploadZone", () => {
  it("sends dropped files the server accepts and fails the others without sending them", async () => {
    uploadFile.mockResolvedValue({ ok: true, document: uploaded });
    const onUploaded = vi.fn();
    render(
      <AppContext.Provider value={app}>
        <UploadZone onUploaded={onUploaded} />
      </AppContext.Provider>,
    );
    const files = [
      new File(["%PDF-1.7"], "Guide.PDF", { type: "application/pdf" }),
      new File(["MZ"], "setup.exe", { type: "application/octet-stream" }),
      new File(["hello"], "notes.txt", { type: "text/plain" }),
    ];
    fireEvent.drop(screen.getByTestId("dropzone"), { dataTransfer: { files } });

    await waitFor(() => expect(onUploaded).toHaveBeenCalledTimes(2));
    expect(uploadFile.mock.calls.map((call) => (call[1] as File).name).sort()).toEqual(["Guide.PDF", "notes.txt"]);
    const refused = screen.getByText("setup.exe").closest("li");
    expect(refused?.textContent).toContain("Not uploaded");
    expect(refused?.textContent).toContain("UNSUPPORTED_FILE_TYPE");
  });

  it("cancels what is queued or sending when it goes away (log-out, another organisation)", async () => {
    const finish: ((value: unknown) => void)[] = [];
    uploadFile.mockImplementation(() => new Promise((resolve) => finish.push(resolve)));
    const view = render(
      <AppContext.Provider value={app}>
        <UploadZone onUploaded={vi.fn()} />
      </AppContext.Provider>,
    );
    const files = ["a.txt", "b.txt", "c.txt"].map((name) => new File(["x"], name, { type: "text/plain" }));
    fireEvent.drop(screen.getByTestId("dropzone"), { dataTransfer: { files } });
    await waitFor(() => expect(uploadFile).toHaveBeenCalledTimes(2));
    const signals = uploadFile.mock.calls.map((call) => call[3] as AbortSignal);
    // Each file goes to the organisation its batch was dropped in, whatever happens meanwhile.
    expect(uploadFile.mock.calls.map((call) => call[4])).toEqual(["o1", "o1"]);
    expect(signals.every((signal) => !signal.aborted)).toBe(true);
    view.unmount();
    expect(signals.every((signal) => signal.aborted)).toBe(true);
    for (const resolve of finish) resolve({ ok: false, error: { code: "CANCELLED" } });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(uploadFile).toHaveBeenCalledTimes(2);
  });
});
