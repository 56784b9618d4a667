import { print } from "graphql";
import { UploadDocumentsDocument, type DocumentFieldsFragment } from "../generated/graphql";
import type { Session } from "../auth/session";
import { AppError, graphQLError } from "./errors";
import { GRAPHQL_PATH } from "./http";

export type UploadResult =
  | { ok: true; document: DocumentFieldsFragment }
  | { ok: false; error: AppError };

interface UploadBody {
  data?: { uploadDocuments: { document: DocumentFieldsFragment | null; error: { code: string; message: string } | null }[] } | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** The GraphQL multipart request for one file (XHR, because fetch reports no upload progress). */
export function multipartBody(file: File): FormData {
  const form = new FormData();
  form.append(
    "operations",
    JSON.stringify({ query: print(UploadDocumentsDocument), variables: { files: [null] } }),
  );
  form.append("map", JSON.stringify({ "0": ["variables.files.0"] }));
  form.append("0", file, file.name);
  return form;
}

/** status 0: the network failed; -1: cancelled. */
function send(
  file: File,
  token: string | null,
  onProgress: (fraction: number) => void,
  signal: AbortSignal | undefined,
): Promise<{ status: number; body: UploadBody | null }> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ status: -1, body: null });
    const xhr = new XMLHttpRequest();
    const abort = () => xhr.abort();
    signal?.addEventListener("abort", abort, { once: true });
    xhr.onloadend = () => signal?.removeEventListener("abort", abort);
    xhr.onabort = () => resolve({ status: -1, body: null });
    xhr.open("POST", GRAPHQL_PATH);
    xhr.setRequestHeader("x-requested-with", "foundry");
    if (token) xhr.setRequestHeader("authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      let body: UploadBody | null = null;
      try {
        body = JSON.parse(xhr.responseText) as UploadBody;
      } catch {
        body = null;
      }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => resolve({ status: 0, body: null });
    xhr.send(multipartBody(file));
  });
}

/** Upload one file; a per-file outcome, never a throw. `signal` cancels it (the session
 * ended, the page went away): nothing more is sent, with any session's token. Nothing is
 * sent either once the session is in another organisation than `organizationId`. */
export async function uploadFile(
  session: Session,
  file: File,
  onProgress: (fraction: number) => void,
  signal?: AbortSignal,
  organizationId: string | undefined = session.info?.organization.id,
): Promise<UploadResult> {
  // Into the organisation the upload (its batch) was started in, or nowhere.
  const token = await session.validAccessToken();
  if (session.info?.organization.id !== organizationId) return { ok: false, error: new AppError("CANCELLED") };
  let reply = await send(file, token, onProgress, signal);
  // Refresh only when the refused token is still the current one; one replaced meanwhile
  // (another request's refusal refreshed it) is simply sent again with the new token.
  if (
    reply.status === 401 &&
    session.canResume &&
    (token !== session.accessToken || (await session.refresh())) &&
    session.info?.organization.id === organizationId
  ) {
    onProgress(0);
    reply = await send(file, session.accessToken, onProgress, signal);
  }
  if (reply.status === -1) return { ok: false, error: new AppError("CANCELLED") };
  if (reply.status === 0) return { ok: false, error: new AppError("NETWORK_ERROR") };
  const first = reply.body?.errors?.[0];
  if (first) return { ok: false, error: graphQLError(first) };
  const outcome = reply.body?.data?.uploadDocuments[0];
  if (outcome?.document) return { ok: true, document: outcome.document };
  if (outcome?.error) return { ok: false, error: new AppError(outcome.error.code, outcome.error.message) };
  if (reply.status === 413) return { ok: false, error: new AppError("REQUEST_TOO_LARGE") };
  return { ok: false, error: new AppError(reply.status >= 500 ? "SERVICE_UNAVAILABLE" : "INTERNAL") };
}
