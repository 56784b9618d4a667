import { useEffect, useState } from "react";
import { useClient, useQuery } from "urql";
import { toAppError, type AppError } from "../api/errors";
import { ChatMessagesDocument, type MessageFieldsFragment } from "../generated/graphql";

/** Messages per request (the server's most). */
const PAGE = 200;
/** Pages read after the first: 10,000 messages in all. */
const MAX_PAGES = 49;

/**
 * All of a chat's messages, oldest first. The server pages oldest first, so a long chat's
 * newest messages are on its last page: the pages after the first are read in turn
 * whenever the first changes (a refetch after an answer), and the pages read before stay
 * shown until the new ones arrive.
 */
export function useChatMessages(chatId: string | null) {
  const client = useClient();
  const [{ data, fetching, error, operation }, refetch] = useQuery({
    query: ChatMessagesDocument,
    variables: { id: chatId ?? "", first: PAGE },
    pause: chatId === null,
  });
  const [later, setLater] = useState<{ chatId: string; messages: MessageFieldsFragment[]; error: AppError | null } | null>(null);

  // urql keeps the previous chat's data and error while the next one loads: never shown as
  // this one's.
  const mine = operation?.variables.id === chatId;
  const current = mine ? data : undefined;

  useEffect(() => {
    const first = current?.chat?.messages;
    if (!chatId || !first?.pageInfo.hasNextPage) return;
    let cancelled = false;
    void (async () => {
      const messages: MessageFieldsFragment[] = [];
      let after = first.pageInfo.endCursor ?? null;
      for (let page = 0; page < MAX_PAGES && after; page += 1) {
        const result = await client
          .query(ChatMessagesDocument, { id: chatId, first: PAGE, after }, { requestPolicy: "network-only" })
          .toPromise();
        if (cancelled) return;
        const connection = result.data?.chat?.messages;
        if (result.error || !connection) return setLater({ chatId, messages, error: toAppError(result.error) });
        messages.push(...connection.edges.map((edge) => edge.node));
        after = connection.pageInfo.hasNextPage ? (connection.pageInfo.endCursor ?? null) : null;
      }
      setLater({ chatId, messages, error: null });
    })();
    return () => {
      cancelled = true;
    };
  }, [current, chatId, client]);

  const firstPage = current?.chat?.messages.edges.map((edge) => edge.node) ?? [];
  const known = new Set(firstPage.map((message) => message.id));
  const rest = later && later.chatId === chatId ? later.messages.filter((message) => !known.has(message.id)) : [];
  return {
    chat: current?.chat,
    loaded: current !== undefined,
    messages: [...firstPage, ...rest],
    fetching,
    error: (mine ? error : undefined) ?? (later && later.chatId === chatId ? later.error : null),
    refetch,
  };
}
