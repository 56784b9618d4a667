import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AppContext, type AppContextValue } from "../context";
import type { Session } from "../auth/session";
import { UploadZone } from "./UploadZone";
import { UploadQueue, UploadQueueContext } from "./uploadQueue";

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

  it("sends two files at a time however many drops there are", async () => {
    uploadFile.mockImplementation(() => new Promise(() => undefined));
    render(
      <AppContext.Provider value={app}>
        <UploadZone onUploaded={vi.fn()} />
      </AppContext.Provider>,
    );
    for (const name of ["a.txt", "b.txt", "c.txt"]) {
      const files = [new File(["x"], name, { type: "text/plain" })];
      fireEvent.drop(screen.getByTestId("dropzone"), { dataTransfer: { files } });
    }
    // Each drop starts sending at once: a third upload would have been called by now.
    expect(uploadFile).toHaveBeenCalledTimes(2);
    expect(screen.getByText("c.txt").closest("li")?.textContent).toContain("Waiting…");
  });

  it("takes the next queued file, from any drop, when one finishes", async () => {
    const finish: ((value: unknown) => void)[] = [];
    uploadFile.mockImplementation(() => new Promise((resolve) => finish.push(resolve)));
    render(
      <AppContext.Provider value={app}>
        <UploadZone onUploaded={vi.fn()} />
      </AppContext.Provider>,
    );
    const dropzone = screen.getByTestId("dropzone");
    fireEvent.drop(dropzone, { dataTransfer: { files: [new File(["x"], "a.txt"), new File(["x"], "b.txt")] } });
    fireEvent.drop(dropzone, { dataTransfer: { files: [new File(["x"], "c.txt")] } });
    await waitFor(() => expect(uploadFile).toHaveBeenCalledTimes(2));
    finish[0]!({ ok: true, document: uploaded });
    await waitFor(() => expect(uploadFile).toHaveBeenCalledTimes(3));
    expect((uploadFile.mock.calls[2]![1] as File).name).toBe("c.txt");
  });

  it("keeps uploading when the user leaves for another screen and comes back", async () => {
    const finish: ((value: unknown) => void)[] = [];
    uploadFile.mockImplementation(() => new Promise((resolve) => finish.push(resolve)));
    const queue = new UploadQueue({} as Session, "o1");
    const detach = queue.attach();
    const zone = (onUploaded: () => void) => (
      <AppContext.Provider value={app}>
        <UploadQueueContext.Provider value={queue}>
          <UploadZone onUploaded={onUploaded} />
        </UploadQueueContext.Provider>
      </AppContext.Provider>
    );
    const first = render(zone(vi.fn()));
    const files = ["a.txt", "b.txt", "c.txt"].map((name) => new File(["x"], name, { type: "text/plain" }));
    fireEvent.drop(screen.getByTestId("dropzone"), { dataTransfer: { files } });
    await waitFor(() => expect(uploadFile).toHaveBeenCalledTimes(2));
    const signals = () => uploadFile.mock.calls.map((call) => call[3] as AbortSignal);

    // To the chat: the zone goes away, the uploads do not.
    first.unmount();
    expect(signals().some((signal) => signal.aborted)).toBe(false);
    finish[0]!({ ok: true, document: uploaded });
    await waitFor(() => expect(uploadFile).toHaveBeenCalledTimes(3));

    // Back to the documents: the zone shows them, and hears of the next one accepted.
    const onUploaded = vi.fn();
    render(zone(onUploaded));
    expect(screen.getByText("a.txt").closest("li")?.textContent).toContain("Uploaded");
    expect(screen.getByText("c.txt").closest("li")?.textContent).not.toContain("Not uploaded");
    finish[1]!({ ok: true, document: uploaded });
    await waitFor(() => expect(onUploaded).toHaveBeenCalledTimes(1));

    // Log-out or another organisation: what is still sending is cancelled.
    detach();
    expect(signals()[2]!.aborted).toBe(true);
  });
});
