import { useEffect, useRef, useState, type DragEvent } from "react";
import { AppError } from "../api/errors";
import { uploadFile } from "../api/upload";
import { useApp } from "../context";
import type { DocumentFieldsFragment } from "../generated/graphql";
import { ACCEPT, hasSupportedName } from "./filetypes";
import { formatBytes } from "./format";

interface Upload {
  key: string;
  name: string;
  size: number;
  progress: number;
  state: "queued" | "uploading" | "done" | "failed";
  error: AppError | null;
}

const PARALLEL = 2;

export function UploadZone({ onUploaded }: { onUploaded: (document: DocumentFieldsFragment) => void }) {
  const { session, info } = useApp();
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [dragging, setDragging] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  // Leaving the page or the session (which unmounts this) cancels what is queued or sending.
  const cancel = useRef(new AbortController());
  useEffect(() => {
    const controller = new AbortController();
    cancel.current = controller;
    return () => controller.abort();
  }, []);

  const update = (key: string, change: Partial<Upload>) =>
    setUploads((all) => all.map((item) => (item.key === key ? { ...item, ...change } : item)));

  async function start(files: File[]) {
    if (files.length === 0) return;
    const batch = files.map((file, i) => {
      // A dropped file of a type the server refuses fails here, without being sent.
      const supported = hasSupportedName(file.name);
      const item: Upload = {
        key: `${Date.now()}-${i}-${file.name}`,
        name: file.name,
        size: file.size,
        progress: 0,
        state: supported ? "queued" : "failed",
        error: supported ? null : new AppError("UNSUPPORTED_FILE_TYPE"),
      };
      return { file, item };
    });
    setUploads((all) => [...batch.map((b) => b.item), ...all]);
    const queue = batch.filter((b) => b.item.state === "queued");
    const signal = cancel.current.signal;
    const organizationId = info.organization.id;
    const worker = async () => {
      for (let next = queue.shift(); next && !signal.aborted; next = queue.shift()) {
        const { file, item } = next;
        update(item.key, { state: "uploading" });
        const result = await uploadFile(session, file, (progress) => update(item.key, { progress }), signal, organizationId);
        if (result.ok) {
          update(item.key, { state: "done", progress: 1 });
          onUploaded(result.document);
        } else {
          update(item.key, { state: "failed", error: result.error });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
  }

  function drop(event: DragEvent) {
    event.preventDefault();
    setDragging(false);
    void start(Array.from(event.dataTransfer.files));
  }

  const finished = uploads.filter((u) => u.state === "done" || u.state === "failed");
  return (
    <section aria-labelledby="upload-heading" className="panel">
      <h2 id="upload-heading">Upload</h2>
      <div
        className={dragging ? "dropzone dragging" : "dropzone"}
        onDragOver={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={drop}
        data-testid="dropzone"
      >
        <p>Drag files here, or</p>
        <label className="button">
          Choose files
          <input
            ref={input}
            type="file"
            multiple
            className="visually-hidden"
            accept={ACCEPT}
            onChange={(event) => {
              void start(Array.from(event.target.files ?? []));
              event.target.value = "";
            }}
          />
        </label>
        <p className="hint">PDF, Word (DOCX), Markdown, HTML or plain text.</p>
      </div>
      {uploads.length > 0 && (
        <>
          <ul className="uploads" aria-label="Uploads">
            {uploads.map((u) => (
              <li key={u.key} className={`upload ${u.state}`}>
                <div className="upload-line">
                  <span className="filename">{u.name}</span>
                  <span className="muted">{formatBytes(u.size)}</span>
                  <span className="upload-state">
                    {u.state === "queued" && "Waiting…"}
                    {u.state === "uploading" && `${Math.round(u.progress * 100)}%`}
                    {u.state === "done" && "Uploaded"}
                    {u.state === "failed" && "Not uploaded"}
                  </span>
                </div>
                {(u.state === "uploading" || u.state === "queued") && (
                  <progress max={1} value={u.progress} aria-label={`Uploading ${u.name}`} />
                )}
                {u.error && (
                  <p className="upload-error" role="alert">
                    {u.error.message} <span className="code">({u.error.code})</span>
                  </p>
                )}
              </li>
            ))}
          </ul>
          {finished.length > 0 && (
            <button
              type="button"
              className="link"
              onClick={() => setUploads((all) => all.filter((u) => u.state === "queued" || u.state === "uploading"))}
            >
              Clear finished uploads
            </button>
          )}
        </>
      )}
    </section>
  );
}
