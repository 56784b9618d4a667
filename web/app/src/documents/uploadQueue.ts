import { createContext } from "react";
import { AppError } from "../api/errors";
import { uploadFile } from "../api/upload";
import type { Session } from "../auth/session";
import type { DocumentFieldsFragment } from "../generated/graphql";
import { hasSupportedName } from "./filetypes";

export interface Upload {
  key: string;
  name: string;
  size: number;
  progress: number;
  state: "queued" | "uploading" | "done" | "failed";
  error: AppError | null;
}

/** Files sent at once, whatever the number of drops (the server limits uploads per user). */
export const PARALLEL = 2;

/**
 * The uploads of one signed-in session in one organisation: every drop feeds one queue
 * that PARALLEL workers at most take files from. It outlives the upload zone (the Shell
 * holds it: going to the chat and back keeps what is queued and sending); detaching it
 * (the Shell unmounts: a log-out, a switch of organisation) cancels what is queued or
 * still sending.
 */
export class UploadQueue {
  private items: Upload[] = [];
  private waiting: { file: File; key: string }[] = [];
  private running = 0;
  private controller: AbortController | null = null;
  private counter = 0;
  private readonly listeners = new Set<() => void>();
  private readonly uploadedListeners = new Set<(document: DocumentFieldsFragment) => void>();

  constructor(
    private readonly session: Session,
    private readonly organizationId: string,
  ) {}

  /** The uploads, newest first (a new array after every change). */
  get uploads(): readonly Upload[] {
    return this.items;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called with each document the server accepted. */
  onUploaded(listener: (document: DocumentFieldsFragment) => void): () => void {
    this.uploadedListeners.add(listener);
    return () => this.uploadedListeners.delete(listener);
  }

  /** Start taking files; the returned function cancels what is queued or sending (and
   * files added after it are not sent). A pair, so React's StrictMode can run it twice. */
  attach(): () => void {
    const controller = new AbortController();
    this.controller = controller;
    return () => {
      controller.abort();
      if (this.controller === controller) this.controller = null;
      const cancelled = new Set(this.waiting.map((next) => next.key));
      this.waiting = [];
      if (cancelled.size > 0) {
        this.change((item) => (cancelled.has(item.key) ? { ...item, state: "failed", error: new AppError("CANCELLED") } : item));
      }
    };
  }

  add(files: File[]): void {
    if (files.length === 0) return;
    const batch = files.map((file) => {
      // A dropped file of a type the server refuses fails here, without being sent.
      const supported = hasSupportedName(file.name);
      this.counter += 1;
      const item: Upload = {
        key: `${this.counter}-${file.name}`,
        name: file.name,
        size: file.size,
        progress: 0,
        state: supported ? "queued" : "failed",
        error: supported ? null : new AppError("UNSUPPORTED_FILE_TYPE"),
      };
      return { file, item };
    });
    this.items = [...batch.map((b) => b.item), ...this.items];
    this.emit();
    this.waiting.push(...batch.filter((b) => b.item.state === "queued").map((b) => ({ file: b.file, key: b.item.key })));
    while (this.running < PARALLEL && this.waiting.length > 0) void this.work();
  }

  clearFinished(): void {
    this.items = this.items.filter((u) => u.state === "queued" || u.state === "uploading");
    this.emit();
  }

  private async work(): Promise<void> {
    this.running += 1;
    try {
      for (let next = this.waiting.shift(); next; next = this.waiting.shift()) {
        const { file, key } = next;
        const signal = this.controller?.signal;
        if (!signal || signal.aborted) {
          this.update(key, { state: "failed", error: new AppError("CANCELLED") });
          continue;
        }
        this.update(key, { state: "uploading" });
        const result = await uploadFile(
          this.session,
          file,
          (progress) => this.update(key, { progress }),
          signal,
          this.organizationId,
        ).catch(() => ({ ok: false as const, error: new AppError("INTERNAL") }));
        if (result.ok) {
          this.update(key, { state: "done", progress: 1 });
          for (const listener of this.uploadedListeners) listener(result.document);
        } else {
          this.update(key, { state: "failed", error: result.error });
        }
      }
    } finally {
      this.running -= 1;
    }
  }

  private update(key: string, change: Partial<Upload>): void {
    this.change((item) => (item.key === key ? { ...item, ...change } : item));
  }

  private change(map: (item: Upload) => Upload): void {
    this.items = this.items.map(map);
    this.emit();
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}

/** The Shell's queue; an upload zone outside one (tests) keeps a queue of its own. */
export const UploadQueueContext = createContext<UploadQueue | null>(null);
