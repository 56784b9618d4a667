import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { CombinedError, Provider, type Client, type OperationResult } from "urql";
import { fromValue, makeSubject, type Source } from "wonka";
import { afterEach, describe, expect, it } from "vitest";
import { AppContext, type AppContextValue } from "../context";
import { AccountScreen } from "./AccountScreen";

afterEach(cleanup);

const CURRENT = "the old passphrase";
const NEW = "a brand new passphrase";

/** A client whose mutations each get the answer `answer` makes for them. */
function fakeClient(answer: (operation: unknown) => Source<OperationResult>) {
  const mutations: unknown[] = [];
  const client = {
    executeMutation: (request: { variables: unknown }) => {
      mutations.push(request.variables);
      return answer(request);
    },
  };
  return { client: client as unknown as Client, mutations };
}

const answered = (operation: unknown) =>
  fromValue({ operation, data: { changePassword: true }, stale: false, hasNext: false } as unknown as OperationResult);

const refused = (extensions: Record<string, unknown>, message: string) => (operation: unknown) =>
  fromValue({
    operation,
    data: undefined,
    error: new CombinedError({ graphQLErrors: [{ message, extensions }] }),
    stale: false,
    hasNext: false,
  } as unknown as OperationResult);

const app = {
  session: {},
  info: { user: { id: "u1", email: "ada@example.com" }, organization: { id: "o1", name: "Lighthouse Society", role: "VIEWER" } },
} as unknown as AppContextValue;

function show(client: Client) {
  render(
    <Provider value={client}>
      <AppContext.Provider value={app}>
        <AccountScreen />
      </AppContext.Provider>
    </Provider>,
  );
}

const field = (label: string) => screen.getByLabelText(label) as HTMLInputElement;

function fill(current: string, next: string, confirmation: string) {
  fireEvent.change(field("Current password"), { target: { value: current } });
  fireEvent.change(field("New password"), { target: { value: next } });
  fireEvent.change(field("Confirm new password"), { target: { value: confirmation } });
}

const submitButton = () => screen.getByRole("button", { name: /Change password|Changing password/ }) as HTMLButtonElement;

describe("AccountScreen: change password", () => {
  it("labels the fields for password managers", () => {
    show(fakeClient(answered).client);
    expect(screen.getByRole("heading", { name: "Change password" })).toBeTruthy();
    expect(field("Current password").autocomplete).toBe("current-password");
    expect(field("New password").autocomplete).toBe("new-password");
    expect(field("Confirm new password").autocomplete).toBe("new-password");
    expect(field("New password").type).toBe("password");
  });

  it("sends the passwords, clears the fields and says the other sessions were signed out", async () => {
    const fake = fakeClient(answered);
    show(fake.client);
    fill(CURRENT, NEW, NEW);
    fireEvent.click(submitButton());
    const status = await screen.findByRole("status");
    expect(status.textContent).toContain("Your password has been changed.");
    expect(status.textContent).toContain("signed out on your other devices, browsers and tabs");
    expect(fake.mutations).toEqual([{ currentPassword: CURRENT, newPassword: NEW }]);
    expect(field("Current password").value).toBe("");
    expect(field("New password").value).toBe("");
    expect(field("Confirm new password").value).toBe("");
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("sends nothing when the confirmation does not match", () => {
    const fake = fakeClient(answered);
    show(fake.client);
    fill(CURRENT, NEW, `${NEW}!`);
    fireEvent.click(submitButton());
    expect(screen.getByRole("alert").textContent).toBe("The new password and its confirmation do not match.");
    expect(field("Confirm new password").getAttribute("aria-invalid")).toBe("true");
    expect(fake.mutations).toEqual([]);
    expect(screen.queryByRole("status")).toBeNull();
  });

  it("sends nothing when the new password is shorter than the server allows", () => {
    const fake = fakeClient(answered);
    show(fake.client);
    fill(CURRENT, "too short", "too short");
    // jsdom, like the spec, leaves minLength to values a user typed: this is the form's own check.
    fireEvent.click(submitButton());
    expect(screen.getByRole("alert").textContent).toBe("The new password needs at least 10 characters.");
    expect(field("New password").getAttribute("aria-invalid")).toBe("true");
    expect(fake.mutations).toEqual([]);
  });

  it.each([
    [{ code: "INVALID_CREDENTIALS" }, "The current password is incorrect.", "The current password is incorrect. (INVALID_CREDENTIALS)"],
    [{ code: "WEAK_PASSWORD" }, "The password must not be your email address.", "The password must not be your email address. (WEAK_PASSWORD)"],
    [
      { code: "VALIDATION_FAILED" },
      "The new password must differ from the current one.",
      "The new password must differ from the current one. (VALIDATION_FAILED)",
    ],
    [{ code: "RATE_LIMITED", retryAfter: 42 }, "Too many attempts.", "Too many requests right now. Try again in 42 seconds. (RATE_LIMITED)"],
  ])("shows the server's refusal %j in plain words and keeps the fields", async (extensions, message, shown) => {
    const fake = fakeClient(refused(extensions, message));
    show(fake.client);
    fill(CURRENT, NEW, NEW);
    fireEvent.click(submitButton());
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toBe(shown);
    expect(fake.mutations).toHaveLength(1);
    expect(screen.queryByRole("status")).toBeNull();
    expect(field("New password").value).toBe(NEW);
    expect(submitButton().disabled).toBe(false);
  });

  it("cannot be sent twice while the change is in flight", async () => {
    const answer = makeSubject<OperationResult>();
    const fake = fakeClient(() => answer.source);
    show(fake.client);
    fill(CURRENT, NEW, NEW);
    fireEvent.click(submitButton());
    expect(submitButton().disabled).toBe(true);
    expect(submitButton().textContent).toBe("Changing password…");
    fireEvent.click(submitButton());
    fireEvent.submit(submitButton().form!);
    expect(fake.mutations).toHaveLength(1);

    await act(async () => {
      answer.next({ data: { changePassword: true }, stale: false, hasNext: false } as unknown as OperationResult);
      answer.complete();
    });
    expect(submitButton().disabled).toBe(false);
    expect(screen.getByRole("status").textContent).toContain("Your password has been changed.");
  });
});
