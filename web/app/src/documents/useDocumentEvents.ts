import { useEffect, useRef } from "react";
import { useClient } from "urql";
import { DocumentEventsDocument, type DocumentEventsSubscription } from "../generated/graphql";

type Event = DocumentEventsSubscription["documentEvents"];

/** Live document events; the stream is re-opened (with a fresh token) whenever it ends. */
export function useDocumentEvents(onEvent: (event: Event) => void): void {
  const client = useClient();
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    let stopped = false;
    let retry: ReturnType<typeof setTimeout> | null = null;
    let subscription: { unsubscribe: () => void } | null = null;
    const open = () => {
      subscription = client.subscription(DocumentEventsDocument, {}).subscribe((result) => {
        if (result.data) handler.current(result.data.documentEvents);
        if (result.error && !stopped) {
          subscription?.unsubscribe();
          retry = setTimeout(open, 2000);
        }
      });
    };
    open();
    return () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      subscription?.unsubscribe();
    };
  }, [client]);
}
