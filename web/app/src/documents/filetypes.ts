/** What the server accepts (domain/ingestion/filetypes.py); it still checks the content. */
export const SUPPORTED_SUFFIXES = [".pdf", ".docx", ".md", ".markdown", ".html", ".htm", ".txt", ".text"] as const;

const SUPPORTED_TYPES = ["application/pdf", "text/plain", "text/markdown", "text/html"];

/** The file picker's `accept` attribute. */
export const ACCEPT = [...SUPPORTED_SUFFIXES, ...SUPPORTED_TYPES].join(",");

export function hasSupportedName(name: string): boolean {
  const lower = name.toLowerCase();
  return SUPPORTED_SUFFIXES.some((suffix) => lower.endsWith(suffix));
}
