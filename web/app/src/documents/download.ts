import type { Session } from "../auth/session";
import { AppError, graphQLError } from "../api/errors";
import { GRAPHQL_PATH } from "../api/http";

/** How long the object URL outlives the click: revoked at once, some browsers (Safari,
 * older Firefox) cancel the download before they have read the blob. */
export const REVOKE_AFTER_MS = 30_000;

export type DownloadResult = { ok: true; filename: string } | { ok: false; error: AppError };

interface RefusalBody {
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** Where to GET `downloadPath`: resolved against the URL /graphql is sent to, so the file
 * comes from the same server as the API, wherever that is. */
export function downloadUrl(downloadPath: string, base: string = window.location.href): string {
  return new URL(downloadPath, new URL(GRAPHQL_PATH, base)).toString();
}

/** Split a header value on `;`, keeping quoted strings (which may hold `;`) whole. */
function parameters(header: string): string[] {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < header.length; i += 1) {
    const ch = header[i]!;
    if (quoted && ch === "\\" && i + 1 < header.length) {
      current += ch + header[i + 1]!;
      i += 1;
    } else if (ch === '"') {
      quoted = !quoted;
      current += ch;
    } else if (ch === ";" && !quoted) {
      parts.push(current);
      current = "";
    } else current += ch;
  }
  parts.push(current);
  return parts.map((part) => part.trim()).filter(Boolean);
}

/** An RFC 5987 ext-value (`charset'language'pct-encoded`); null when it cannot be read. */
function extValue(value: string): string | null {
  const match = /^([A-Za-z0-9!#$%&+^_`{}~-]+)'[^']*'(.*)$/.exec(value);
  if (!match) return null;
  const charset = match[1]!.toLowerCase();
  const encoded = match[2]!;
  try {
    if (charset === "utf-8") return decodeURIComponent(encoded);
    if (charset === "iso-8859-1") {
      return encoded.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    }
  } catch {
    return null; // malformed percent-encoding or UTF-8
  }
  return null;
}

function unquote(value: string): string {
  if (value.length < 2 || !value.startsWith('"') || !value.endsWith('"')) return value;
  return value.slice(1, -1).replace(/\\(.)/g, "$1");
}

/** No control characters (they never belong in a file name), trimmed; null when empty. */
function clean(name: string | null): string | null {
  if (name === null) return null;
  const cleaned = name.replace(/[\u0000-\u001f\u007f]/g, "").trim();
  return cleaned || null;
}

/**
 * The file name a Content-Disposition header gives: `filename*` (RFC 5987, UTF-8 or
 * ISO-8859-1) first, as RFC 6266 says, then `filename` (quoted or a token); null when it
 * gives none that can be read.
 */
export function filenameFromContentDisposition(header: string | null): string | null {
  if (!header) return null;
  let extended: string | null = null;
  let plain: string | null = null;
  // The first part is the disposition type (attachment, inline).
  for (const part of parameters(header).slice(1)) {
    const equals = part.indexOf("=");
    if (equals < 0) continue;
    const name = part.slice(0, equals).trim().toLowerCase();
    const value = part.slice(equals + 1).trim();
    if (name === "filename*" && extended === null) extended = clean(extValue(value));
    else if (name === "filename" && plain === null) plain = clean(unquote(value));
  }
  return extended ?? plain;
}

/** Save a blob as a file: an object URL clicked through a temporary <a download>. */
export function saveBlob(blob: Blob, filename: string, doc: Document = document): void {
  const url = URL.createObjectURL(blob);
  const link = doc.createElement("a");
  link.href = url;
  link.download = filename;
  link.rel = "noopener";
  link.style.display = "none";
  doc.body.append(link);
  try {
    link.click();
  } finally {
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), REVOKE_AFTER_MS);
  }
}

/** A refusal's code and message from its JSON body, or from the status when it has none
 * (a proxy's error page). */
async function refusal(response: Response): Promise<AppError> {
  try {
    const body = (await response.json()) as RefusalBody;
    const first = body.errors?.[0];
    if (first) return graphQLError(first);
  } catch {
    // not JSON: judged by the status below
  }
  if (response.status === 401) return new AppError("UNAUTHENTICATED");
  if (response.status === 404) return new AppError("NOT_FOUND");
  if (response.status === 429) {
    const seconds = Number(response.headers.get("retry-after"));
    return new AppError("RATE_LIMITED", undefined, Number.isFinite(seconds) && seconds > 0 ? Math.ceil(seconds) : null);
  }
  return new AppError(response.status >= 500 ? "SERVICE_UNAVAILABLE" : "INTERNAL");
}

/**
 * Fetch a document's original file with the session's access token and save it, named as
 * the server's Content-Disposition says (else `fallbackName`). Never throws. Like uploads,
 * a 401 with the token still current refreshes the session once and sends again, and
 * nothing is sent once the session is in another organisation than `organizationId`.
 * `signal` cancels it (CANCELLED).
 */
export async function downloadDocument(
  session: Session,
  downloadPath: string,
  fallbackName: string,
  signal?: AbortSignal,
  organizationId: string | undefined = session.info?.organization.id,
  save: (blob: Blob, filename: string) => void = saveBlob,
): Promise<DownloadResult> {
  const url = downloadUrl(downloadPath);
  const moved = () => session.info?.organization.id !== organizationId;
  const send = (token: string | null): Promise<Response> => {
    const headers: Record<string, string> = {};
    if (token) headers["authorization"] = `Bearer ${token}`;
    return fetch(url, { headers, signal: signal ?? null });
  };
  let blob: Blob;
  let filename: string;
  try {
    const token = await session.validAccessToken();
    if (moved() || signal?.aborted) return { ok: false, error: new AppError("CANCELLED") };
    let response = await send(token);
    // Only the status: reading a file's body to look for an error code would buffer it twice.
    if (response.status === 401 && session.canResume && (token !== session.accessToken || (await session.refresh()))) {
      if (moved()) return { ok: false, error: new AppError("CANCELLED") };
      response = await send(session.accessToken);
    }
    if (!response.ok) return { ok: false, error: await refusal(response) };
    blob = await response.blob();
    filename = filenameFromContentDisposition(response.headers.get("content-disposition")) ?? fallbackName;
  } catch {
    if (signal?.aborted) return { ok: false, error: new AppError("CANCELLED") };
    return { ok: false, error: new AppError("NETWORK_ERROR") };
  }
  if (moved() || signal?.aborted) return { ok: false, error: new AppError("CANCELLED") };
  try {
    save(blob, filename);
  } catch {
    return { ok: false, error: new AppError("INTERNAL") }; // the browser would not save it
  }
  return { ok: true, filename };
}
