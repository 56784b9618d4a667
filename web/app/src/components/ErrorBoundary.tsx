import { Component, type ErrorInfo, type ReactNode } from "react";

interface Props {
  children: ReactNode;
  /** What "Reload the page" does (tests pass a stand-in). */
  onReload?: () => void;
}

/**
 * The last resort for an error thrown while rendering: a page that says so and offers a
 * reload (which resumes the session from this tab's refresh token), instead of a blank one.
 */
export class ErrorBoundary extends Component<Props, { failed: boolean }> {
  override state = { failed: false };

  static getDerivedStateFromError(): { failed: boolean } {
    return { failed: true };
  }

  override componentDidCatch(error: unknown, info: ErrorInfo): void {
    console.error("foundry.render_failed", error, info.componentStack);
  }

  override render(): ReactNode {
    if (!this.state.failed) return this.props.children;
    const reload = this.props.onReload ?? (() => window.location.reload());
    return (
      <main className="centered">
        <div className="error-note" role="alert">
          <p>Something went wrong while showing this page.</p>
          <button type="button" className="button" onClick={reload}>
            Reload the page
          </button>
        </div>
      </main>
    );
  }
}
