import { describe, expect, it } from "vitest";
import { AppError, describeError, toAppError } from "./errors";

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
});
