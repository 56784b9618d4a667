import { useContext, useEffect, useRef, useState, useSyncExternalStore, type DragEvent } from "react";
import { useApp } from "../context";
import type { DocumentFieldsFragment } from "../generated/graphql";
import { ACCEPT } from "./filetypes";
import { formatBytes } from "./format";
import { UploadQueue, UploadQueueContext } from "./uploadQueue";

export function UploadZone({ onUploaded }: { onUploaded: (document: DocumentFieldsFragment) => void }) {
  const { session, info } = useApp();
  // The Shell's queue outlives this zone (leaving for the chat keeps uploads going); it is
  // cancelled with the session or the organisation. Without one, the zone keeps its own,
  // cancelled when the zone goes away.
  const shared = useContext(UploadQueueContext);
  const [own] = useState(() => (shared ? null : new UploadQueue(session, info.organization.id)));
  const queue = shared ?? own!;
  useEffect(() => own?.attach(), [own]);
  const uploads = useSyncExternalStore(
    (listener) => queue.subscribe(listener),
    () => queue.uploads,
  );
  const [dragging, setDragging] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const uploaded = useRef(onUploaded);
  useEffect(() => {
    uploaded.current = onUploaded;
  });
  useEffect(() => queue.onUploaded((document) => uploaded.current(document)), [queue]);

  const start = (files: File[]) => queue.add(files);

  function drop(event: DragEvent) {
    event.preventDefault();
    setDragging(false);
    start(Array.from(event.dataTransfer.files));
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
              start(Array.from(event.target.files ?? []));
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
              onClick={() => queue.clearFinished()}
            >
              Clear finished uploads
            </button>
          )}
        </>
      )}
    </section>
  );
}
