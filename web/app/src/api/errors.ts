/** Plain-language messages for the server's error codes (domain/errors.py). */
const MESSAGES: Record<string, string> = {
  UNAUTHENTICATED: "Your session has ended. Please log in again.",
  TOKEN_EXPIRED: "Your session has expired. Please log in again.",
  FORBIDDEN: "Your role in this organisation does not allow this.",
  NOT_FOUND: "It no longer exists, or you cannot see it.",
  VALIDATION_FAILED: "Some of the information entered is not valid.",
  INVALID_CREDENTIALS: "That email and password do not match an account.",
  EMAIL_TAKEN: "An account with this email already exists. Try logging in.",
  SIGNUP_CLOSED: "New accounts cannot be created here. Ask an admin of your organisation to arrange an account for you.",
  WEAK_PASSWORD: "Choose a stronger password: at least 10 characters, not your email address.",
  INVALID_REFRESH_TOKEN: "Your session has ended. Please log in again.",
  REFRESH_TOKEN_REUSED: "For your safety this session was closed. Please log in again.",
  ALREADY_MEMBER: "This person is already a member.",
  LAST_ADMIN: "The organisation needs at least one admin.",
  RATE_LIMITED: "Too many requests right now. Wait a moment and try again.",
  CSRF_CHECK_FAILED: "The upload was refused by a security check. Reload the page and try again.",
  REQUEST_TOO_LARGE: "This is too large to send in one go.",
  UNSUPPORTED_FILE_TYPE: "This type of file is not supported. Use PDF, Word (DOCX), Markdown, HTML or plain text.",
  FILE_TOO_LARGE: "This file is larger than the upload limit.",
  DUPLICATE_DOCUMENT: "This file has already been uploaded.",
  TOO_MANY_FILES: "Too many files at once. Upload fewer files per batch.",
  QUOTA_EXCEEDED: "Your organisation has reached its limit for stored documents. Delete documents you no longer need, or ask whoever runs this server to raise the limit.",
  PARSE_FAILED: "The document could not be read. It may be damaged.",
  PARSE_TIMEOUT: "Reading the document took too long. It may be damaged or unusually complex.",
  ENCRYPTED_PDF: "The PDF is password-protected. Upload a copy without a password.",
  EMPTY_DOCUMENT: "The document contains no text.",
  NO_TEXT_LAYER: "This PDF has pages but no text: it looks like a scan. This server does not run OCR (text recognition); run OCR on the PDF first, then upload the result.",
  DOCUMENT_TOO_LARGE: "The document is too long to process.",
  PROCESSING_TIMEOUT: "Processing took too long. Try reprocessing it.",
  PROCESSING_FAILED: "The document could not be processed. Try reprocessing it later.",
  STORED_FILE_MISSING: "The server lost the uploaded file. Delete this document, then upload the file again.",
  EMBEDDING_UNAVAILABLE: "The indexing service was unavailable. Try reprocessing it later.",
  EMBEDDING_REJECTED: "The indexing service refused the document. Ask an admin to check the settings.",
  LLM_UNAVAILABLE: "The answering service is unavailable. Try again shortly.",
  QUESTION_TOO_LONG: "The question is too long. Shorten it and ask again.",
  // The server no longer understands what this page sends: it was updated since the page loaded.
  GRAPHQL_VALIDATION_FAILED: "The app has been updated since this page was opened. Reload the page to continue.",
  GRAPHQL_PARSE_FAILED: "The app has been updated since this page was opened. Reload the page to continue.",
  BAD_REQUEST: "The server could not understand the request. Reload the page and try again.",
  BATCHING_NOT_SUPPORTED: "The server could not understand the request. Reload the page and try again.",
  QUERY_TOO_DEEP: "The request was too complex for the server. Reload the page and try again.",
  TOO_MANY_ALIASES: "The request was too complex for the server. Reload the page and try again.",
  TOO_MANY_TOKENS: "The request was too large for the server. Reload the page and try again.",
  TOO_MANY_OPERATIONS: "Too many live updates are open on this connection. Reload the page and try again.",
  WEBSOCKET_REQUIRED: "Live updates need a WebSocket connection, which could not be used. Reload the page; if it happens again, a proxy or firewall may be blocking WebSockets.",
  SERVICE_UNAVAILABLE: "The server is busy or starting up. Try again shortly.",
  NETWORK_ERROR: "Cannot reach the server. Check your connection and try again.",
  CANCELLED: "Cancelled before it finished.",
  DUPLICATED_TAB: "This tab is a copy of another signed-in tab, which keeps that session. Log in to use this one separately.",
  INTERNAL: "Something went wrong on the server.",
};

/** Codes whose server message is already plain and more specific (which field, which file,
 * which quota and how much of it is used). */
const SERVER_WORDS = new Set(["WEAK_PASSWORD", "VALIDATION_FAILED", "DUPLICATE_DOCUMENT", "QUESTION_TOO_LONG", "QUOTA_EXCEEDED"]);

export function describeError(code: string | null | undefined, fallback?: string): string {
  if (code && fallback && SERVER_WORDS.has(code)) return fallback;
  if (code && MESSAGES[code]) return MESSAGES[code];
  return fallback || "Something went wrong.";
}

/** A failure the UI can show: plain words plus the code for support. */
export class AppError extends Error {
  readonly code: string;
  /** Seconds to wait before trying again, when the server said (RATE_LIMITED). */
  readonly retryAfter: number | null;
  constructor(code: string, message?: string, retryAfter: number | null = null) {
    super(
      code === "RATE_LIMITED" && retryAfter !== null
        ? `Too many requests right now. Try again in ${retryAfter} ${retryAfter === 1 ? "second" : "seconds"}.`
        : describeError(code, message),
    );
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

interface GraphQLErrorLike {
  message: string;
  extensions?: Record<string, unknown> | null;
}

export function codeOf(error: GraphQLErrorLike): string {
  const code = error.extensions?.["code"];
  return typeof code === "string" ? code : "INTERNAL";
}

function retryAfterOf(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.ceil(value) : null;
}

/** One GraphQL error as an AppError: its code, its message and the server's retryAfter
 * (seconds, given with RATE_LIMITED). */
export function graphQLError(error: GraphQLErrorLike): AppError {
  return new AppError(codeOf(error), error.message, retryAfterOf(error.extensions?.["retryAfter"]));
}

/**
 * The server's code in a WebSocket close, when it gave one: it closes a socket over its
 * connections budget with 4429 and the reason `{"code":"RATE_LIMITED","retryAfter":n}`
 * (infrastructure/http/socket_refusals.py). Other closes (strawberry's plain-text
 * reasons, a dropped connection) carry none: null.
 */
export function closeError(value: unknown): AppError | null {
  if (typeof value !== "object" || value === null) return null;
  const { code, reason } = value as { code?: unknown; reason?: unknown };
  if (typeof code !== "number" || typeof reason !== "string" || !reason.startsWith("{")) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(reason);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const said = parsed as { code?: unknown; retryAfter?: unknown; message?: unknown };
  if (typeof said.code !== "string" || !said.code) return null;
  return new AppError(said.code, typeof said.message === "string" ? said.message : undefined, retryAfterOf(said.retryAfter));
}

/** The first error of a urql CombinedError (or anything thrown) as an AppError. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (typeof error === "object" && error !== null) {
    const combined = error as { graphQLErrors?: GraphQLErrorLike[]; networkError?: unknown };
    const first = combined.graphQLErrors?.[0];
    if (first) return graphQLError(first);
    const network = combined.networkError;
    if (network) {
      // A subscription's failure is what its socket ended with: our own refusal (an
      // AppError, see SocketPool), or a close event that may carry the server's code.
      if (network instanceof AppError) return network;
      return closeError(network) ?? new AppError("NETWORK_ERROR");
    }
  }
  return new AppError("INTERNAL");
}
