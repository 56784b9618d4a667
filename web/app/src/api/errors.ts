/** Plain-language messages for the server's error codes (domain/errors.py). */
const MESSAGES: Record<string, string> = {
  UNAUTHENTICATED: "Your session has ended. Please log in again.",
  TOKEN_EXPIRED: "Your session has expired. Please log in again.",
  FORBIDDEN: "Your role in this organisation does not allow this.",
  NOT_FOUND: "It no longer exists, or you cannot see it.",
  VALIDATION_FAILED: "Some of the information entered is not valid.",
  INVALID_CREDENTIALS: "That email and password do not match an account.",
  EMAIL_TAKEN: "An account with this email already exists. Try logging in.",
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
  PARSE_FAILED: "The document could not be read. It may be damaged.",
  PARSE_TIMEOUT: "Reading the document took too long. It may be damaged or unusually complex.",
  ENCRYPTED_PDF: "The PDF is password-protected. Upload a copy without a password.",
  EMPTY_DOCUMENT: "The document contains no text.",
  DOCUMENT_TOO_LARGE: "The document is too long to process.",
  PROCESSING_TIMEOUT: "Processing took too long. Try reprocessing it.",
  PROCESSING_FAILED: "The document could not be processed. Try reprocessing it later.",
  EMBEDDING_UNAVAILABLE: "The indexing service was unavailable. Try reprocessing it later.",
  EMBEDDING_REJECTED: "The indexing service refused the document. Ask an admin to check the settings.",
  LLM_UNAVAILABLE: "The answering service is unavailable. Try again shortly.",
  QUESTION_TOO_LONG: "The question is too long. Shorten it and ask again.",
  SERVICE_UNAVAILABLE: "The server is busy or starting up. Try again shortly.",
  NETWORK_ERROR: "Cannot reach the server. Check your connection and try again.",
  CANCELLED: "Cancelled before it finished.",
  DUPLICATED_TAB: "This tab is a copy of another signed-in tab, which keeps that session. Log in to use this one separately.",
  INTERNAL: "Something went wrong on the server.",
};

/** Codes whose server message is already plain and more specific (which field, which file). */
const SERVER_WORDS = new Set(["WEAK_PASSWORD", "VALIDATION_FAILED", "DUPLICATE_DOCUMENT", "QUESTION_TOO_LONG"]);

export function describeError(code: string | null | undefined, fallback?: string): string {
  if (code && fallback && SERVER_WORDS.has(code)) return fallback;
  if (code && MESSAGES[code]) return MESSAGES[code];
  return fallback || "Something went wrong.";
}

/** A failure the UI can show: plain words plus the code for support. */
export class AppError extends Error {
  readonly code: string;
  constructor(code: string, message?: string) {
    super(describeError(code, message));
    this.code = code;
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

/** The first error of a urql CombinedError (or anything thrown) as an AppError. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (typeof error === "object" && error !== null) {
    const combined = error as { graphQLErrors?: GraphQLErrorLike[]; networkError?: Error };
    const first = combined.graphQLErrors?.[0];
    if (first) return new AppError(codeOf(first), first.message);
    if (combined.networkError) return new AppError("NETWORK_ERROR");
  }
  return new AppError("INTERNAL");
}
