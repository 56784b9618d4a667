import type { SourceFieldsFragment } from "../generated/graphql";
import { splitCitations } from "./stream";

interface Props {
  text: string;
  sources: SourceFieldsFragment[];
  onCite: (source: SourceFieldsFragment) => void;
}

/** Answer text with each `[n]` as a button that opens source n. */
export function AnswerText({ text, sources, onCite }: Props) {
  return (
    <>
      {splitCitations(text).map((part, i) => {
        if (part.kind === "text") return <span key={i}>{part.text}</span>;
        const source = sources.find((s) => s.index === part.index);
        if (!source) return <span key={i}>[{part.index}]</span>;
        return (
          <button
            key={i}
            type="button"
            className="citation"
            onClick={() => onCite(source)}
            aria-label={`Source ${part.index}: ${source.document.filename}${source.page ? `, page ${source.page}` : ""}`}
          >
            [{part.index}]
          </button>
        );
      })}
    </>
  );
}
