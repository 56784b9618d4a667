import { useEffect, useRef } from "react";
import type { SourceFieldsFragment } from "../generated/graphql";

export function SourcePanel({ source, onClose }: { source: SourceFieldsFragment; onClose: () => void }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [source]);
  return (
    <aside
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
