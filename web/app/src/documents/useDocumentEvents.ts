import { useEffect, useRef } from "react";
import { useClient } from "urql";
import { toAppError } from "../api/errors";
import { socketEvents } from "../api/sockets";
import { DocumentEventsDocument, type DocumentEventsSubscription } from "../generated/graphql";

type Event = DocumentEventsSubscription["documentEvents"];

/** Waits before opening the stream again after an error: doubling, at most MAX_WAIT_MS. */
const FIRST_WAIT_MS = 1000;
const MAX_WAIT_MS = 30_000;

/**
 * Live document events. When the stream ends with an error (a refused token, which the
 * connection pool refreshes; a rate limit, whose retryAfter is waited out first: asking
 * sooner is refused again), it is opened again after a growing wait, and
 * `onReopen` runs: events sent while it was closed are lost, so the caller reloads.
 * A dropped connection is mended by the connection itself (api/sockets.ts), which says
 * so once it is back: `onReopen` runs then too.
 */
export function useDocumentEvents(onEvent: (event: Event) => void, onReopen: () => void): void {
  const client = useClient();
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const reopened = useRef(onReopen);
  reopened.current = onReopen;
  useEffect(() => {
    let stopped = false;
    let wait = FIRST_WAIT_MS;
    let retry: ReturnType<typeof setTimeout> | null = null;
    let subscription: { unsubscribe: () => void } | null = null;
    const open = () => {
      let failed = false;
      subscription = client.subscription(DocumentEventsDocument, {}).subscribe((result) => {
        if (failed || stopped) return;
        if (result.error) {
          failed = true;
          const retryAfter = toAppError(result.error).retryAfter;
          const delay = Math.max(wait, (retryAfter ?? 0) * 1000);
          retry = setTimeout(() => {
            subscription?.unsubscribe();
            open();
            reopened.current();
          }, delay);
          wait = Math.min(wait * 2, MAX_WAIT_MS);
        } else if (result.data) {
          wait = FIRST_WAIT_MS;
          handler.current(result.data.documentEvents);
        }
      });
    };
    open();
    const reconnected = () => reopened.current();
    socketEvents.addEventListener("reconnected", reconnected);
    return () => {
      socketEvents.removeEventListener("reconnected", reconnected);
      stopped = true;
      if (retry) clearTimeout(retry);
      subscription?.unsubscribe();
    };
  }, [client]);
}
