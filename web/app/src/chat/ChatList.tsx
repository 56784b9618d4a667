import { useEffect, useMemo, useRef, useState } from "react";
import { useClient, useMutation, useQuery } from "urql";
import { toAppError, type AppError } from "../api/errors";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { Empty, ErrorNote, Spinner } from "../components/Feedback";
import {
  ChatsDocument,
  CreateChatDocument,
  DeleteChatDocument,
  RenameChatDocument,
  type ChatsQuery,
} from "../generated/graphql";

import { navigate } from "../router";

const PAGE = 50;
type ChatSummary = ChatsQuery["chats"]["edges"][number]["node"];

/** The name a chat goes by: one not yet named after its first question has none. */
export function chatName(title: string): string {
  return title.trim() || "Untitled chat";
}

/** `version` changes when the screen knows the list changed (a chat was created or named). */
export function ChatList({ activeId, version }: { activeId: string | null; version: number }) {
  // additionalTypenames: an empty list still refreshes when a Chat is created.
  const context = useMemo(() => ({ additionalTypenames: ["Chat"] }), []);
  const [{ data, fetching, error }, refetch] = useQuery({ query: ChatsDocument, variables: { first: PAGE }, context });
  const client = useClient();
  // Older chats, fetched on "Show more": dropped when the first page ends elsewhere (a chat
  // became active and moved up, or was made or deleted), as their cursors would skip one.
  const [more, setMore] = useState<{ base: string | null; chats: ChatSummary[]; cursor: string | null; hasNext: boolean } | null>(
    null,
  );
  const [loadingMore, setLoadingMore] = useState(false);
  const firstPageEnd = data?.chats.pageInfo.endCursor ?? null;
  const firstPageEndRef = useRef(firstPageEnd);
  firstPageEndRef.current = firstPageEnd;
  const shown = more && more.base === firstPageEnd ? more : null;
  const [expanded, setExpanded] = useState(false);
  const [, createChat] = useMutation(CreateChatDocument);
  const [, renameChat] = useMutation(RenameChatDocument);
  const [, deleteChat] = useMutation(DeleteChatDocument);
  const [editing, setEditing] = useState<{ id: string; title: string } | null>(null);
  const [deleting, setDeleting] = useState<{ id: string; title: string } | null>(null);
  const [failure, setFailure] = useState<AppError | null>(null);

  const reload = () => refetch({ requestPolicy: "network-only" });
  useEffect(() => {
    if (version > 0) refetch({ requestPolicy: "network-only" });
  }, [version, refetch]);
  useEffect(() => setExpanded(false), [activeId]);

  async function create() {
    setFailure(null);
    const result = await createChat({ title: null });
    if (result.error || !result.data) return setFailure(toAppError(result.error));
    reload();
    navigate({ name: "chat", chatId: result.data.createChat.id });
  }

  async function rename() {
    if (!editing) return;
    const title = editing.title.trim();
    setEditing(null);
    if (!title) return;
    const { id } = editing;
    const result = await renameChat({ id, title });
    if (result.error) setFailure(toAppError(result.error));
    else setMore((m) => m && { ...m, chats: m.chats.map((chat) => (chat.id === id ? { ...chat, title } : chat)) });
    reload();
  }

  async function remove() {
    if (!deleting) return;
    const { id } = deleting;
    setDeleting(null);
    const result = await deleteChat({ id });
    if (result.error) return setFailure(toAppError(result.error));
    setMore((m) => m && { ...m, chats: m.chats.filter((chat) => chat.id !== id) });
    reload();
    if (id === activeId) navigate({ name: "chat", chatId: null });
  }

  async function showMore() {
    const after = shown ? shown.cursor : firstPageEnd;
    const base = firstPageEnd;
    setLoadingMore(true);
    const page = await client.query(ChatsDocument, { first: PAGE, after }, { requestPolicy: "network-only" }).toPromise();
    setLoadingMore(false);
    if (firstPageEndRef.current !== base) return; // it follows a first page that is gone
    if (page.error || !page.data) return setFailure(toAppError(page.error));
    const next = page.data.chats;
    setMore((current) => ({
      base,
      chats: [...(current && current.base === base ? current.chats : []), ...next.edges.map((edge) => edge.node)],
      cursor: next.pageInfo.endCursor ?? null,
      hasNext: next.pageInfo.hasNextPage,
    }));
  }

  const firstPage = data?.chats.edges.map((e) => e.node) ?? [];
  const onFirstPage = new Set(firstPage.map((chat) => chat.id));
  const chats = [...firstPage, ...(shown?.chats ?? []).filter((chat) => !onFirstPage.has(chat.id))];
  const hasNext = shown ? shown.hasNext : (data?.chats.pageInfo.hasNextPage ?? false);
  return (
    <nav className={expanded ? "chat-list expanded" : "chat-list"} aria-label="Chats">
      <div className="chat-list-head">
        <button type="button" className="button full" onClick={() => void create()}>
          New chat
        </button>
        <button
          type="button"
          className="button secondary phone-only"
          aria-expanded={expanded}
          onClick={() => setExpanded(!expanded)}
        >
          {expanded ? "Hide chats" : `Chats (${chats.length})`}
        </button>
      </div>
      {failure && <ErrorNote error={failure} />}
      {fetching && !data && <Spinner label="Loading chats…" />}
      {error && !data && <ErrorNote error={toAppError(error)} onRetry={reload} />}
      {data && chats.length === 0 && <Empty title="No chats yet." />}
      <ul>
        {chats.map((chat) => (
          <li key={chat.id} className={chat.id === activeId ? "active" : undefined}>
            {editing?.id === chat.id ? (
              <form
                className="rename"
                onSubmit={(event) => {
                  event.preventDefault();
                  void rename();
                }}
              >
                <label className="visually-hidden" htmlFor={`rename-${chat.id}`}>
                  New name
                </label>
                <input
                  id={`rename-${chat.id}`}
                  autoFocus
                  value={editing.title}
                  maxLength={200}
                  onChange={(event) => setEditing({ id: chat.id, title: event.target.value })}
                  onKeyDown={(event) => {
                    if (event.key === "Escape") setEditing(null);
                  }}
                />
                <button type="submit" className="button small">
                  Save
                </button>
              </form>
            ) : (
              <>
                <a
                  href={`/chat/${encodeURIComponent(chat.id)}`}
                  aria-current={chat.id === activeId ? "page" : undefined}
                  onClick={(event) => {
                    if (event.metaKey || event.ctrlKey || event.shiftKey) return;
                    event.preventDefault();
                    navigate({ name: "chat", chatId: chat.id });
                  }}
                >
                  {chatName(chat.title)}
                </a>
                <span className="chat-actions">
                  <button
                    type="button"
                    className="icon"
                    aria-label={`Rename ${chatName(chat.title)}`}
                    onClick={() => setEditing({ id: chat.id, title: chat.title })}
                  >
                    ✎
                  </button>
                  <button
                    type="button"
                    className="icon"
                    aria-label={`Delete ${chatName(chat.title)}`}
                    onClick={() => setDeleting({ id: chat.id, title: chatName(chat.title) })}
                  >
                    ✕
                  </button>
                </span>
              </>
            )}
          </li>
        ))}
      </ul>
      {hasNext && (
        <button type="button" className="button secondary more" disabled={loadingMore} onClick={() => void showMore()}>
          {loadingMore ? "Loading…" : "Show more chats"}
        </button>
      )}
      <ConfirmDialog
        open={deleting !== null}
        title="Delete this chat?"
        body={`“${deleting?.title ?? ""}” and all its messages will be deleted.`}
        confirmLabel="Delete"
        danger
        onConfirm={() => void remove()}
        onCancel={() => setDeleting(null)}
      />
    </nav>
  );
}
