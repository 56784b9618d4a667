import type { ReactNode } from "react";
import { AppError, describeError } from "../api/errors";

export function Spinner({ label }: { label: string }) {
  return (
    <div className="spinner" role="status">
      <span className="spinner-dot" aria-hidden="true" />
      <span>{label}</span>
    </div>
  );
}

export function ErrorNote({ error, onRetry }: { error: AppError | { code: string; message?: string }; onRetry?: () => void }) {
  const text = error instanceof AppError ? error.message : describeError(error.code, error.message);
  return (
    <div className="error-note" role="alert">
      <p>
        {text} <span className="code">({error.code})</span>
      </p>
      {onRetry && (
        <button type="button" className="button secondary" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <p className="empty-title">{title}</p>
      {children}
    </div>
  );
}
