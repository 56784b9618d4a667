import type { DocumentStatus } from "../generated/graphql";

export const STATUS_LABELS: Record<DocumentStatus, string> = {
  PENDING: "Waiting",
  PROCESSING: "Processing",
  READY: "Ready",
  FAILED: "Failed",
};

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export function formatDate(iso: string): string {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
