import { afterEach, describe, expect, it, vi } from "vitest";
import type { Session } from "../auth/session";
import { uploadFile } from "./upload";

afterEach(() => vi.unstubAllGlobals());

describe("uploadFile", () => {
  it("sends nothing once the session has moved to another organisation", async () => {
    const opened = vi.fn();
    vi.stubGlobal("XMLHttpRequest", vi.fn(() => ({ open: opened })));
    const session = {
      info: { organization: { id: "o1" } },
      canResume: true,
      // The switch lands while the token is being made ready.
      validAccessToken: vi.fn(async () => {
        session.info = { organization: { id: "o2" } };
        return "access-of-o2";
      }),
    };
    const result = await uploadFile(session as unknown as Session, new File(["x"], "a.txt"), () => undefined);
    expect(result).toMatchObject({ ok: false, error: { code: "CANCELLED" } });
    expect(opened).not.toHaveBeenCalled();
  });
});
