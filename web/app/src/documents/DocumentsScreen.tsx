import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useClient, useMutation, useQuery } from "urql";
import { toAppError, describeError } from "../api/errors";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { Empty, ErrorNote, Spinner } from "../components/Feedback";
import { useApp } from "../context";
import {
  DeleteDocumentDocument,
  DocumentsDocument,
  ReprocessDocumentDocument,
  type DocumentFieldsFragment,
  type DocumentStatus,
} from "../generated/graphql";
import { downloadDocument } from "./download";
import { STATUS_LABELS, formatBytes, formatDate } from "./format";
import { UploadZone } from "./UploadZone";
import { useDocumentEvents } from "./useDocumentEvents";

const PAGE = 100;
/** How far along the pipeline a status is: a later event never yields to an earlier list. */
const STAGE: Record<DocumentStatus, number> = { PENDING: 0, PROCESSING: 1, READY: 2, FAILED: 2 };
const FILTERS: (DocumentStatus | "ALL")[] = ["ALL", "READY", "PROCESSING", "PENDING", "FAILED"];

interface Live {
  document: DocumentFieldsFragment;
  progress: number | null;
}

export function DocumentsScreen() {
  const { session, info } = useApp();
  const canEdit = info.organization.role !== "VIEWER";
  const [filter, setFilter] = useState<DocumentStatus | "ALL">("ALL");
  const status = filter === "ALL" ? null : filter;
  const context = useMemo(() => ({ additionalTypenames: ["Document"] }), []);
  const [{ data, fetching, error }, refetch] = useQuery({
    query: DocumentsDocument,
    variables: { first: PAGE, status },
    context,
  });
  const client = useClient();
  // Pages after the first, fetched on "Show more": kept while the first page ends where
  // they began (`base`), dropped when it ends elsewhere (a document came or went: the
  // pages' cursors would skip or repeat one) or the filter changes.
  const [more, setMore] = useState<{
    base: string | null;
    documents: DocumentFieldsFragment[];
    cursor: string | null;
    hasNext: boolean;
  } | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  useEffect(() => setMore(null), [status]);
  const firstPageEnd = data?.documents.pageInfo.endCursor ?? null;
  const firstPageEndRef = useRef(firstPageEnd);
  firstPageEndRef.current = firstPageEnd;
  const shown = more && more.base === firstPageEnd ? more : null;
  const [live, setLive] = useState<Record<string, Live>>({});
  const [removed, setRemoved] = useState<Set<string>>(new Set());
  // What the list says wins over an event seen before it, unless the event is further on.
  useEffect(() => {
    const listed = data?.documents.edges.map((edge) => edge.node) ?? [];
    setLive((all) => {
      const kept = { ...all };
      for (const document of listed) {
        const seen = kept[document.id];
        if (seen && STAGE[seen.document.status] <= STAGE[document.status]) delete kept[document.id];
      }
      return kept;
    });
  }, [data]);
  const [confirm, setConfirm] = useState<{ kind: "delete" | "reprocess"; document: DocumentFieldsFragment } | null>(null);
  const [actionError, setActionError] = useState<ReturnType<typeof toAppError> | null>(null);
  const [, deleteDocument] = useMutation(DeleteDocumentDocument);
  const [, reprocessDocument] = useMutation(ReprocessDocumentDocument);
  const [downloading, setDownloading] = useState<Set<string>>(new Set());
  // Downloads still running when the screen goes away are cancelled (and saved nowhere).
  const downloads = useRef<AbortController | null>(null);
  useEffect(() => {
    const controller = new AbortController();
    downloads.current = controller;
    return () => controller.abort();
  }, []);

  const remember = useCallback(
    (document: DocumentFieldsFragment, progress: number | null = null) =>
      setLive((all) => ({ ...all, [document.id]: { document, progress } })),
    [],
  );
  const forget = useCallback((id: string) => {
    setRemoved((all) => new Set(all).add(id));
    setLive((all) => {
      const { [id]: _gone, ...rest } = all;
      return rest;
    });
  }, []);
  // One polite announcement when a document is done, not every progress step of every badge.
  const [announcement, setAnnouncement] = useState("");
  useDocumentEvents(
    (event) => {
      const { document } = event;
      if (event.deleted) return forget(document.id);
      remember(document, event.progress);
      if (document.status === "READY") setAnnouncement(`${document.filename} is ready.`);
      if (document.status === "FAILED") setAnnouncement(`${document.filename} could not be processed.`);
    },
    () => refetch({ requestPolicy: "network-only" }),
  );

  const documents = useMemo(() => {
    const firstPage = (data?.documents.edges ?? []).map((edge) => edge.node);
    const onFirstPage = new Set(firstPage.map((d) => d.id));
    const listed = [...firstPage, ...(shown?.documents ?? []).filter((d) => !onFirstPage.has(d.id))];
    const known = new Set(listed.map((d) => d.id));
    const fresh = Object.values(live)
      .map((l) => l.document)
      .filter((d) => !known.has(d.id))
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    return [...fresh, ...listed]
      .map((d) => live[d.id]?.document ?? d)
      .filter((d) => !removed.has(d.id) && (status === null || d.status === status));
  }, [data, shown, live, removed, status]);

  const statusRef = useRef(status);
  statusRef.current = status;
  const hasNext = shown ? shown.hasNext : (data?.documents.pageInfo.hasNextPage ?? false);
  async function showMore() {
    const after = shown ? shown.cursor : firstPageEnd;
    const base = firstPageEnd;
    const asked = status;
    setLoadingMore(true);
    const page = await client.query(DocumentsDocument, { first: PAGE, after, status }, { requestPolicy: "network-only" }).toPromise();
    setLoadingMore(false);
    // The filter changed, or the first page ends elsewhere now: this page follows a list
    // that is gone.
    if (statusRef.current !== asked || firstPageEndRef.current !== base) return;
    if (page.error || !page.data) return setActionError(toAppError(page.error));
    const next = page.data.documents;
    setMore((current) => ({
      base,
      documents: [...(current && current.base === base ? current.documents : []), ...next.edges.map((edge) => edge.node)],
      cursor: next.pageInfo.endCursor,
      hasNext: next.pageInfo.hasNextPage,
    }));
  }

  async function download(document: DocumentFieldsFragment) {
    const signal = downloads.current?.signal;
    if (!signal || signal.aborted) return;
    setActionError(null);
    setDownloading((all) => new Set(all).add(document.id));
    const result = await downloadDocument(session, document.downloadPath, document.filename, signal, info.organization.id);
    if (signal.aborted) return;
    setDownloading((all) => {
      const rest = new Set(all);
      rest.delete(document.id);
      return rest;
    });
    if (result.ok || result.error.code === "CANCELLED") return;
    setActionError(result.error);
    // Deleted meanwhile (its event may not have arrived): the list no longer offers it.
    if (result.error.code === "NOT_FOUND") refetch({ requestPolicy: "network-only" });
  }

  async function act() {
    if (!confirm) return;
    const { kind, document } = confirm;
    setConfirm(null);
    setActionError(null);
    if (kind === "delete") {
      const result = await deleteDocument({ id: document.id });
      if (result.error) setActionError(toAppError(result.error));
      else {
        forget(document.id);
        refetch({ requestPolicy: "network-only" });
      }
    } else {
      const result = await reprocessDocument({ id: document.id });
      if (result.error) setActionError(toAppError(result.error));
      else if (result.data) remember(result.data.reprocessDocument);
    }
  }

  return (
    <div className="documents">
      <h1 tabIndex={-1}>Documents</h1>
      <p className="visually-hidden" aria-live="polite">
        {announcement}
      </p>
      {canEdit ? (
        <UploadZone
          onUploaded={(document) => {
            remember(document);
            refetch({ requestPolicy: "network-only" });
          }}
        />
      ) : (
        <p className="note">Viewers can search and ask questions; an editor or admin uploads documents.</p>
      )}
      <section aria-labelledby="library-heading" className="panel">
        <div className="panel-head">
          <h2 id="library-heading">
            Library {data && <span className="muted">({data.documents.totalCount})</span>}
          </h2>
          <label className="inline">
            Show
            <select value={filter} onChange={(event) => setFilter(event.target.value as DocumentStatus | "ALL")}>
              {FILTERS.map((f) => (
                <option key={f} value={f}>
                  {f === "ALL" ? "All documents" : STATUS_LABELS[f]}
                </option>
              ))}
            </select>
          </label>
        </div>
        {actionError && <ErrorNote error={actionError} />}
        {fetching && !data && <Spinner label="Loading documents…" />}
        {error && !data && <ErrorNote error={toAppError(error)} onRetry={() => refetch({ requestPolicy: "network-only" })} />}
        {data && documents.length === 0 && (
          <Empty title={status ? `No ${STATUS_LABELS[status].toLowerCase()} documents.` : "No documents yet."}>
            {!status && canEdit && <p>Upload a PDF, Word, Markdown, HTML or text file to get started.</p>}
          </Empty>
        )}
        {documents.length > 0 && (
          <ul className="document-list" aria-label="Documents">
            {documents.map((d) => {
              const progress = live[d.id]?.progress;
              return (
                <li key={d.id} className="document" data-status={d.status}>
                  <div className="document-main">
                    <span className="filename">{d.filename}</span>
                    <span className="muted small">
                      {formatBytes(d.sizeBytes)}
                      {d.pageCount ? ` · ${d.pageCount} page${d.pageCount === 1 ? "" : "s"}` : ""}
                      {" · "}
                      {formatDate(d.createdAt)}
                    </span>
                    {d.status === "FAILED" && (
                      <span className="error-text small">
                        {describeError(d.errorCode)} {d.errorCode && <span className="code">({d.errorCode})</span>}
                      </span>
                    )}
                  </div>
                  <span className={`badge ${d.status.toLowerCase()}`}>
                    {STATUS_LABELS[d.status]}
                    {d.status === "PROCESSING" && progress != null ? ` ${Math.round(progress * 100)}%` : ""}
                  </span>
                  <div className="row-actions">
                    <button
                      type="button"
                      className="button secondary small"
                      onClick={() => void download(d)}
                      disabled={downloading.has(d.id)}
                      aria-label={`Download ${d.filename}`}
                    >
                      {downloading.has(d.id) ? "Downloading…" : "Download"}
                    </button>
                    {canEdit && (
                      <>
                        <button
                          type="button"
                          className="button secondary small"
                          onClick={() => setConfirm({ kind: "reprocess", document: d })}
                          disabled={d.status === "PENDING" || d.status === "PROCESSING"}
                          aria-label={`Reprocess ${d.filename}`}
                        >
                          Reprocess
                        </button>
                        <button
                          type="button"
                          className="button danger small"
                          onClick={() => setConfirm({ kind: "delete", document: d })}
                          aria-label={`Delete ${d.filename}`}
                        >
                          Delete
                        </button>
                      </>
                    )}
                  </div>
                </li>
              );
            })}
          </ul>
        )}
        {hasNext && (
          <button type="button" className="button secondary more" disabled={loadingMore} onClick={() => void showMore()}>
            {loadingMore ? "Loading…" : "Show more"}
          </button>
        )}
      </section>
      <ConfirmDialog
        open={confirm !== null}
        title={confirm?.kind === "delete" ? "Delete this document?" : "Reprocess this document?"}
        body={
          confirm?.kind === "delete"
            ? `“${confirm.document.filename}” and everything extracted from it will be removed. Answers will no longer cite it.`
            : `“${confirm?.document.filename ?? ""}” will be read and indexed again. It cannot be cited until it is ready.`
        }
        confirmLabel={confirm?.kind === "delete" ? "Delete" : "Reprocess"}
        danger={confirm?.kind === "delete"}
        onConfirm={() => void act()}
        onCancel={() => setConfirm(null)}
      />
    </div>
  );
}
