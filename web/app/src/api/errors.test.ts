import { describe, expect, it } from "vitest";
import { AppError, describeError, toAppError } from "./errors";

/** Every code in the server's registry (domain/errors.py, class ErrorCode). */
const SERVER_CODES = [
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "VALIDATION_FAILED",
  "INVALID_CREDENTIALS",
  "EMAIL_TAKEN",
  "SIGNUP_CLOSED",
  "WEAK_PASSWORD",
  "TOKEN_EXPIRED",
  "INVALID_REFRESH_TOKEN",
  "REFRESH_TOKEN_REUSED",
  "ALREADY_MEMBER",
  "LAST_ADMIN",
  "RATE_LIMITED",
  "CSRF_CHECK_FAILED",
  "REQUEST_TOO_LARGE",
  "QUERY_TOO_DEEP",
  "TOO_MANY_ALIASES",
  "TOO_MANY_TOKENS",
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "BATCHING_NOT_SUPPORTED",
  "BAD_REQUEST",
  "UNSUPPORTED_FILE_TYPE",
  "FILE_TOO_LARGE",
  "DUPLICATE_DOCUMENT",
  "TOO_MANY_FILES",
  "QUOTA_EXCEEDED",
  "PARSE_FAILED",
  "PARSE_TIMEOUT",
  "ENCRYPTED_PDF",
  "EMPTY_DOCUMENT",
  "NO_TEXT_LAYER",
  "DOCUMENT_TOO_LARGE",
  "PROCESSING_TIMEOUT",
  "PROCESSING_FAILED",
  "STORED_FILE_MISSING",
  "EMBEDDING_UNAVAILABLE",
  "EMBEDDING_REJECTED",
  "LLM_UNAVAILABLE",
  "QUESTION_TOO_LONG",
  "WEBSOCKET_REQUIRED",
  "TOO_MANY_OPERATIONS",
  "SERVICE_UNAVAILABLE",
  "INTERNAL",
];

describe("error messages", () => {
  it("explains known codes in plain words", () => {
    expect(describeError("FILE_TOO_LARGE")).toMatch(/larger than the upload limit/);
    expect(describeError("UNSUPPORTED_FILE_TYPE")).toMatch(/PDF/);
    expect(describeError("RATE_LIMITED")).toMatch(/Too many requests/);
  });

  it("keeps the server's specific words where they say more", () => {
    expect(describeError("WEAK_PASSWORD", "Passwords need at least 10 characters.")).toBe(
      "Passwords need at least 10 characters.",
    );
    expect(describeError("WEAK_PASSWORD")).toMatch(/at least 10 characters/);
  });

  it("falls back to the server's message for unknown codes", () => {
    expect(describeError("SOMETHING_NEW", "Server says no")).toBe("Server says no");
  });

  it("reads the code of a GraphQL error", () => {
    const error = toAppError({ graphQLErrors: [{ message: "x", extensions: { code: "LAST_ADMIN" } }] });
    expect(error).toBeInstanceOf(AppError);
    expect(error.code).toBe("LAST_ADMIN");
    expect(error.message).toMatch(/at least one admin/);
  });

  it("treats a network failure as such", () => {
    expect(toAppError({ graphQLErrors: [], networkError: new Error("down") }).code).toBe("NETWORK_ERROR");
  });

  it("maps the server's rate-limit close of a WebSocket to its code and wait", () => {
    const closed = { code: 4429, reason: JSON.stringify({ code: "RATE_LIMITED", retryAfter: 7 }) };
    const error = toAppError({ graphQLErrors: [], networkError: closed });
    expect(error.code).toBe("RATE_LIMITED");
    expect(error.retryAfter).toBe(7);
    expect(error.message).toMatch(/Try again in 7 seconds/);
    // Any {code} reason is the server's word; plain-text reasons and drops are not.
    expect(toAppError({ networkError: { code: 4403, reason: '{"code":"FORBIDDEN"}' } }).code).toBe("FORBIDDEN");
    expect(toAppError({ networkError: { code: 4403, reason: "Forbidden" } }).code).toBe("NETWORK_ERROR");
    expect(toAppError({ networkError: { code: 4429, reason: "Too many initialisation requests" } }).code).toBe("NETWORK_ERROR");
    expect(toAppError({ networkError: { code: 1006, reason: "" } }).code).toBe("NETWORK_ERROR");
    expect(toAppError({ networkError: { code: 4429, reason: "{not json" } }).code).toBe("NETWORK_ERROR");
  });

  it("keeps the wait a rate-limited GraphQL error gives", () => {
    const error = toAppError({
      graphQLErrors: [{ message: "Too many requests; try again later.", extensions: { code: "RATE_LIMITED", retryAfter: 1 } }],
    });
    expect(error.retryAfter).toBe(1);
    expect(error.message).toMatch(/Try again in 1 second\./);
  });

  it("passes on the app's own refusal of a subscription", () => {
    expect(toAppError({ graphQLErrors: [], networkError: new AppError("CANCELLED") }).code).toBe("CANCELLED");
  });

  it("has plain words for every code the server can send, not its raw text", () => {
    const specific = new Set(["WEAK_PASSWORD", "VALIDATION_FAILED", "DUPLICATE_DOCUMENT", "QUESTION_TOO_LONG", "QUOTA_EXCEEDED"]);
    for (const code of SERVER_CODES) {
      if (specific.has(code)) continue;
      expect(describeError(code, "raw server text"), code).not.toBe("raw server text");
    }
  });

  it("sends people whom closed sign-up refuses to an admin", () => {
    expect(describeError("SIGNUP_CLOSED", "Sign-up is closed on this server")).toMatch(/Ask an admin of your organisation/);
  });

  it("says which quota a refused upload met, or that storage is full when the server does not", () => {
    const server = "This file (3.0 MiB) does not fit in your organisation's storage limit of 1.0 GiB, of which 1022.0 MiB is in use.";
    expect(describeError("QUOTA_EXCEEDED", server)).toBe(server);
    expect(describeError("QUOTA_EXCEEDED")).toMatch(/limit for stored documents.*Delete documents/);
    expect(new AppError("QUOTA_EXCEEDED").message).not.toBe(describeError("FILE_TOO_LARGE"));
  });

  it("tells a scan without text from an empty file", () => {
    expect(describeError("NO_TEXT_LAYER")).toMatch(/OCR/);
    expect(describeError("NO_TEXT_LAYER")).not.toBe(describeError("EMPTY_DOCUMENT"));
  });

  it("tells the user to reload when the server no longer understands the app", () => {
    expect(describeError("GRAPHQL_VALIDATION_FAILED", "Cannot query field 'x'")).toMatch(/updated.*Reload/);
    expect(describeError("GRAPHQL_PARSE_FAILED", "Syntax Error")).toMatch(/updated.*Reload/);
  });
});
