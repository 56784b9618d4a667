// End-to-end flow in headless Chromium (Debian's package, never a downloaded browser)
// against a running `foundry up`: sign up, upload, see READY, download the file back, ask,
// see tokens stream, open a citation, add a colleague, log out; the colleague logs in and
// switches to the shared organisation, changes their password on the Account screen and
// logs in with the new one. Prints one JSON line with what it saw; exits 1 on failure.
//
// Environment: FOUNDRY_URL (required), E2E_DOCUMENT (file to upload), E2E_QUESTION,
// E2E_EXPECT (text the cited snippet must contain), E2E_SCREENSHOTS (directory),
// E2E_DOWNLOADS (directory the downloaded file is saved in; default a new one under the
// system's temporary directory), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

const baseUrl = required("FOUNDRY_URL");
const documentPath = required("E2E_DOCUMENT");
const question = required("E2E_QUESTION");
const expected = required("E2E_EXPECT");
const shots = process.env.E2E_SCREENSHOTS ?? "e2e-screenshots";
const downloads = process.env.E2E_DOWNLOADS ?? mkdtempSync(join(tmpdir(), "foundry-e2e-downloads-"));
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const READY_TIMEOUT = Number(process.env.E2E_READY_TIMEOUT_MS ?? 240_000);
const STEP_TIMEOUT = 60_000;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}

const results = { steps: [], screenshots: [], consoleErrors: [] };
const step = (name, detail = {}) => {
  results.steps.push(name);
  Object.assign(results, detail);
  console.error(`e2e: ${name}`);
};

mkdirSync(shots, { recursive: true });
mkdirSync(downloads, { recursive: true });
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
let failed = null;
try {
  // acceptDownloads is Playwright's default; said here because the download step needs it.
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on("console", (message) => {
    if (message.type() === "error") results.consoleErrors.push(message.text());
  });
  const shoot = async (name) => {
    const path = join(shots, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    results.screenshots.push(path);
  };

  // Sign up.
  await page.goto(baseUrl);
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await page.getByRole("button", { name: "Create an account" }).click();
  const email = `e2e-${Date.now()}@example.com`;
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery staple");
  await page.getByLabel(/Organisation name/).fill("Lighthouse Society");
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.getByRole("heading", { name: "Documents" }).waitFor();
  step("signed_up", { email });
  await page.getByText("No documents yet.").waitFor();
  step("empty_state_shown");

  // Drag and drop the real document onto the drop zone: its bytes as they are on disk.
  const name = basename(documentPath);
  const uploaded = readFileSync(documentPath);
  await page.getByTestId("dropzone").evaluate(
    (zone, file) => {
      const bytes = Uint8Array.from(atob(file.base64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], file.name, { type: "text/markdown" }));
      zone.dispatchEvent(new DragEvent("dragover", { bubbles: true, cancelable: true, dataTransfer: transfer }));
      zone.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: transfer }));
    },
    { name, base64: uploaded.toString("base64") },
  );
  // And a file the server refuses, through the file picker: its error shows with its code.
  await page.locator('input[type="file"]').setInputFiles({
    name: "photo.png",
    mimeType: "image/png",
    buffer: Buffer.from("89504e470d0a1a0a0000000d49484452", "hex"),
  });
  const uploadError = page.locator(".upload.failed .upload-error");
  await uploadError.waitFor();
  step("upload_error_shown", { uploadErrorText: await uploadError.innerText() });

  const row = page.locator(".document", { hasText: name });
  await row.locator(".badge", { hasText: "Ready" }).waitFor({ timeout: READY_TIMEOUT });
  step("document_ready");
  await shoot("documents");

  // Its Download button saves the original file: the browser's own download, named as
  // uploaded and byte for byte what was uploaded.
  const downloadButton = row.getByRole("button", { name: `Download ${name}`, exact: true });
  // Together, so a click that fails leaves no waiter to reject unhandled once the browser closes.
  const [download] = await Promise.all([page.waitForEvent("download"), downloadButton.click()]);
  const downloadedFilename = download.suggestedFilename();
  if (downloadedFilename !== name) throw new Error(`downloaded as ${JSON.stringify(downloadedFilename)}, not ${JSON.stringify(name)}`);
  const downloadFailure = await download.failure();
  if (downloadFailure) throw new Error(`the download of ${name} failed: ${downloadFailure}`);
  const downloadedPath = join(downloads, name);
  await download.saveAs(downloadedPath);
  const downloaded = readFileSync(downloadedPath);
  if (!downloaded.equals(uploaded)) {
    throw new Error(`the downloaded ${name} (${downloaded.length} bytes) differs from the uploaded one (${uploaded.length} bytes)`);
  }
  // The screen is done with it: the button is back from "Downloading…".
  await downloadButton.and(page.locator(":enabled")).waitFor();
  step("document_downloaded", { downloadedFilename, downloadedPath, downloadedBytes: downloaded.length });

  // Ask in a new chat; record every version of the streamed answer.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Chat" }).click();
  await page.getByRole("heading", { name: "Ask your documents" }).waitFor();
  await page.evaluate(() => {
    window.__answerSnapshots = [];
    new MutationObserver(() => {
      const node = document.querySelector('[data-testid="streaming-answer"]');
      const text = node?.textContent ?? "";
      const seen = window.__answerSnapshots;
      if (text && seen[seen.length - 1] !== text) seen.push(text);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await page.getByLabel("Your question").fill(question);
  await page.getByRole("button", { name: "Ask" }).click();
  step("asked");
  const stop = page.getByRole("button", { name: "Stop" });
  const liveRegion = await page.getByTestId("streaming-answer").getAttribute("aria-live");
  await page.locator(".message.assistant .citation").first().waitFor({ timeout: READY_TIMEOUT });
  await stop.waitFor({ state: "detached", timeout: READY_TIMEOUT });
  const snapshots = await page.evaluate(() => window.__answerSnapshots);
  const answer = await page.locator(".message.assistant .bubble").last().innerText();
  step("answer_streamed", { snapshots, answer, liveRegion });

  await page.locator(".message.assistant .citation").first().click();
  const panel = page.getByTestId("source-panel");
  await panel.waitFor();
  const snippet = await panel.locator(".snippet").innerText();
  const sourceFile = await panel.locator(".filename").innerText();
  step("citation_opened", { snippet, sourceFile });
  if (!snippet.includes(expected)) throw new Error(`snippet lacks ${JSON.stringify(expected)}: ${snippet}`);
  // An untitled chat is named after its first question.
  await page.getByRole("heading", { name: question }).waitFor();
  await page.getByRole("navigation", { name: "Chats" }).getByRole("link", { name: question }).waitFor();
  step("chat_named");
  await shoot("chat");

  // The same screen at phone width.
  await page.setViewportSize({ width: 390, height: 844 });
  await shoot("chat-phone");
  await page.setViewportSize({ width: 1280, height: 860 });

  // Admins see the organisation's members and their roles.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Members" }).click();
  await page.getByRole("heading", { name: "Members of Lighthouse Society" }).waitFor();
  await page.locator(".member-list li", { hasText: email }).waitFor();
  step("members_listed");

  // A colleague with an account of their own is added as an editor.
  const colleague = `e2e-colleague-${Date.now()}@example.com`;
  const password = "correct horse battery staple";
  const signUp = await fetch(new URL("/graphql", baseUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      query: "mutation($input: SignUpInput!) { signUp(input: $input) { user { id } } }",
      variables: { input: { email: colleague, password } },
    }),
  });
  if (!(await signUp.json()).data?.signUp) throw new Error("the colleague's sign-up failed");
  await page.getByRole("region", { name: "Add a member" }).getByLabel("Email").fill(colleague);
  await page.getByRole("region", { name: "Add a member" }).getByLabel("Role").selectOption("EDITOR");
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await page.locator(".member-list li", { hasText: colleague }).waitFor();
  step("member_added");
  await shoot("members");

  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  step("logged_out", { refreshTokenAfterLogout: await page.evaluate(() => sessionStorage.getItem("foundry.refreshToken")) });

  // The colleague logs in to their own organisation and switches to the shared one.
  await page.getByLabel("Email").fill(colleague);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Documents" }).click();
  await page.getByText("No documents yet.").waitFor();
  const switcher = page.getByLabel("Organisation");
  await switcher.waitFor();
  const choices = await switcher.locator("option").allInnerTexts();
  const shared = await switcher.locator("option", { hasText: "Lighthouse Society" }).getAttribute("value");
  await switcher.selectOption(shared);
  await page.locator(".document", { hasText: name }).locator(".badge", { hasText: "Ready" }).waitFor();
  const switchedTo = (await switcher.inputValue()) === shared;
  await shoot("organization-switched");
  // And back: the picker works again in the organisation it mounted anew.
  const own = await switcher.locator("option", { hasNotText: "Lighthouse Society" }).getAttribute("value");
  await switcher.selectOption(own);
  await page.getByText("No documents yet.").waitFor();
  step("organization_switched", { organizationChoices: choices, switchedTo, switchedBack: (await switcher.inputValue()) === own });

  // The colleague changes their password on the Account screen, then logs in with it.
  const newPassword = "a brand new staple for the battery horse";
  await page.getByRole("link", { name: "Account", exact: true }).click();
  await page.getByRole("heading", { name: "Change password" }).waitFor();
  await page.getByLabel("Current password", { exact: true }).fill(password);
  await page.getByLabel("New password", { exact: true }).fill(newPassword);
  await page.getByLabel("Confirm new password", { exact: true }).fill(newPassword);
  await page.getByRole("button", { name: "Change password" }).click();
  const changed = await page.getByRole("status").filter({ hasText: "Your password has been changed" }).innerText();
  await shoot("account");
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await page.getByLabel("Email").fill(colleague);
  await page.getByLabel("Password").fill(newPassword);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("navigation", { name: "Main" }).waitFor();
  step("password_changed", { passwordChangedText: changed });
  await context.close();
} catch (error) {
  failed = error;
  results.error = String(error?.stack ?? error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
process.exit(failed ? 1 : 0);
