import { useEffect, useRef } from "react";
import type { SourceFieldsFragment } from "../generated/graphql";

/** The source a `[n]` button opened; focus moves to its heading and, on close, back to that button. */
export function SourcePanel({ source, onClose }: { source: SourceFieldsFragment; onClose: () => void }) {
  const panel = useRef<HTMLElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const opener = useRef<HTMLElement | null>(null);
  useEffect(() => {
    // The element focused before the panel took focus: the [n] button just pressed.
    const active = document.activeElement;
    if (active instanceof HTMLElement && active !== document.body && !panel.current?.contains(active)) {
      opener.current = active;
    }
    heading.current?.focus();
  }, [source]);
  useEffect(
    () => () => {
      if (opener.current?.isConnected) opener.current.focus();
    },
    [],
  );
  return (
    <aside
      ref={panel}
      className="source-panel"
      aria-labelledby="source-heading"
      onKeyDown={(event) => {
        if (event.key === "Escape") onClose();
      }}
      data-testid="source-panel"
    >
      <div className="panel-head">
        <h2 id="source-heading" ref={heading} tabIndex={-1}>
          Source {source.index}
        </h2>
        <button type="button" className="button secondary small" onClick={onClose}>
          Close
        </button>
      </div>
      <p className="filename">{source.document.filename}</p>
      {source.page != null && <p className="muted">Page {source.page}</p>}
      <blockquote className="snippet">{source.snippet}</blockquote>
    </aside>
  );
}
