import { useEffect, useRef, useState, type FormEvent } from "react";
import { useClient, useMutation } from "urql";
import { describeError, toAppError, type AppError } from "../api/errors";
import { saysUnauthenticated } from "../api/sockets";
import { Empty, ErrorNote, Spinner } from "../components/Feedback";
import {
  AnswerDocument,
  CreateChatDocument,
  type MessageFieldsFragment,
  type SourceFieldsFragment,
} from "../generated/graphql";
import { navigate } from "../router";
import { AnswerText } from "./AnswerText";
import { ChatList } from "./ChatList";
import { SourcePanel } from "./SourcePanel";
import { applyAnswerEvent, failStream, idleStream, startStream, stopStream, type AnswerStream } from "./stream";
import { useChatMessages } from "./useChatMessages";

const AUTH_CODES = new Set(["UNAUTHENTICATED", "TOKEN_EXPIRED"]);

const DEGRADED_NOTE =
  "The AI model was unavailable, so this answer quotes the most relevant passages directly.";

export function ChatScreen({ chatId }: { chatId: string | null }) {
  const client = useClient();
  const [, createChat] = useMutation(CreateChatDocument);
  const [stream, setStream] = useState<{ chatId: string; state: AnswerStream } | null>(null);
  const [source, setSource] = useState<SourceFieldsFragment | null>(null);
  const [failure, setFailure] = useState<AppError | null>(null);
  const [chatsVersion, setChatsVersion] = useState(0);
  const subscription = useRef<{ unsubscribe: () => void } | null>(null);
  const { chat, loaded, messages, fetching, error, refetch } = useChatMessages(chatId);

  useEffect(() => () => subscription.current?.unsubscribe(), []);
  useEffect(() => setSource(null), [chatId]);

  function ask(targetChatId: string, question: string, retried = false) {
    subscription.current?.unsubscribe();
    if (!retried) setStream({ chatId: targetChatId, state: startStream(question) });
    const update = (change: (state: AnswerStream) => AnswerStream) =>
      setStream((current) => (current && current.chatId === targetChatId ? { ...current, state: change(current.state) } : current));
    let last: unknown = null;
    let over = false;
    const handle = client
      .subscription(AnswerDocument, { chatId: targetChatId, question })
      .subscribe((result) => {
        if (over) return;
        // urql keeps the previous data beside a later error, and repeats the last result
        // when the stream completes: each event is applied once, and an error wins.
        if (result.error) {
          const appError = toAppError(result.error);
          // A refused token arrives as the socket's close (4403, a network error to urql)
          // or, when the session ends between connecting and asking, as the answer's error.
          if (!retried && (AUTH_CODES.has(appError.code) || saysUnauthenticated(result.error.networkError))) {
            // The server refused the socket's token before it stored anything: the
            // connection pool is refreshing it, and the question is asked again once
            // (unless it was stopped or replaced meanwhile).
            over = true;
            setTimeout(() => {
              if (subscription.current === handle) ask(targetChatId, question, true);
            }, 0);
            return;
          }
          update((state) => failStream(state, appError.code, appError.message));
          return;
        }
        if (!result.data || result.data === last) return;
        last = result.data;
        const event = result.data.answer;
        update((state) => applyAnswerEvent(state, event));
        if (event.__typename === "AnswerDone") {
          refetch({ requestPolicy: "network-only" });
          setChatsVersion((v) => v + 1); // an untitled chat is named after its first question
        }
      });
    subscription.current = handle;
  }

  function stop() {
    subscription.current?.unsubscribe();
    subscription.current = null;
    setStream((current) => (current ? { ...current, state: stopStream(current.state) } : current));
  }

  /** False when the question was not asked (the chat could not be created). */
  async function submit(question: string): Promise<boolean> {
    setFailure(null);
    if (chatId) {
      ask(chatId, question);
      return true;
    }
    const created = await createChat({ title: null });
    if (created.error || !created.data) {
      setFailure(toAppError(created.error));
      return false;
    }
    const id = created.data.createChat.id;
    setChatsVersion((v) => v + 1);
    navigate({ name: "chat", chatId: id });
    ask(id, question);
    return true;
  }

  const current = stream && stream.chatId === chatId ? stream.state : idleStream;
  // One answer at a time: a new question would cancel the one being written in another chat.
  const elsewhere =
    stream && stream.chatId !== chatId && (stream.state.status === "waiting" || stream.state.status === "streaming")
      ? stream.chatId
      : null;
  const stored = current.message && messages.some((m) => m.id === current.message?.id);
  const showStream = current.status !== "idle" && !stored;
  const busy = current.status === "waiting" || current.status === "streaming";
  // The server stores the question before answering: once the messages are reloaded (a
  // rename, coming back) the last one is the question of the answer shown, running, stopped
  // or failed. Show it once: stored, with the answer's block after it.
  const last = messages[messages.length - 1];
  const questionStored = showStream && last?.role === "USER" && last.content === current.question;

  return (
    <div className={source ? "chat with-source" : "chat"}>
      <ChatList activeId={chatId} version={chatsVersion} />
      <section className="conversation" aria-labelledby="chat-heading">
        <h1 id="chat-heading" tabIndex={-1}>
          {chat?.title || (chatId ? "Chat" : "Ask your documents")}
        </h1>
        {failure && <ErrorNote error={failure} />}
        {chatId && fetching && !loaded && <Spinner label="Loading messages…" />}
        {chatId && error && <ErrorNote error={toAppError(error)} onRetry={() => refetch({ requestPolicy: "network-only" })} />}
        {chatId && loaded && chat === null && <ErrorNote error={{ code: "NOT_FOUND", message: "This chat does not exist." }} />}
        {!showStream && messages.length === 0 && (!chatId || chat) && (
          <Empty title="Ask a question about your documents.">
            <p>Answers quote your documents and cite them with numbers like [1]; select a number to see the passage.</p>
          </Empty>
        )}
        <ol className="messages" aria-label="Messages">
          {messages.map((message) => (
            <MessageItem key={message.id} message={message} onCite={setSource} />
          ))}
          {showStream && (
            <>
              {!questionStored && (
                <li className="message user">
                  <p className="bubble">{current.question}</p>
                </li>
              )}
              <li className="message assistant">
                <div className="bubble" aria-live="polite" data-testid="streaming-answer">
                  {current.status === "waiting" && <Spinner label="Finding relevant passages…" />}
                  <AnswerText text={current.text} sources={current.sources} onCite={setSource} />
                  {busy && current.text && <span className="cursor" aria-hidden="true" />}
                </div>
                {current.status === "stopped" && <p className="note">Stopped. The partial answer is not saved.</p>}
                {current.status === "error" && current.error && (
                  <ErrorNote error={{ code: current.error.code, message: describeError(current.error.code, current.error.message) }} />
                )}
                {current.message?.degraded && <p className="note degraded">{DEGRADED_NOTE}</p>}
              </li>
            </>
          )}
        </ol>
        {elsewhere && (
          <p className="note" role="status">
            An answer is still being written in{" "}
            <a
              href={`/chat/${encodeURIComponent(elsewhere)}`}
              onClick={(event) => {
                if (event.metaKey || event.ctrlKey || event.shiftKey) return;
                event.preventDefault();
                navigate({ name: "chat", chatId: elsewhere });
              }}
            >
              another chat
            </a>
            . Ask here once it is done, or stop it there.
          </p>
        )}
        <QuestionForm busy={busy} blocked={elsewhere !== null} onAsk={submit} onStop={stop} />
      </section>
      {source && <SourcePanel source={source} onClose={() => setSource(null)} />}
    </div>
  );
}

function MessageItem({ message, onCite }: { message: MessageFieldsFragment; onCite: (s: SourceFieldsFragment) => void }) {
  if (message.role === "USER") {
    return (
      <li className="message user">
        <p className="bubble">{message.content}</p>
      </li>
    );
  }
  return (
    <li className="message assistant">
      <div className="bubble">
        <AnswerText text={message.content} sources={message.sources} onCite={onCite} />
      </div>
      {message.degraded && <p className="note degraded">{DEGRADED_NOTE}</p>}
    </li>
  );
}

function QuestionForm({
  busy,
  blocked,
  onAsk,
  onStop,
}: {
  busy: boolean;
  blocked: boolean;
  onAsk: (question: string) => Promise<boolean>;
  onStop: () => void;
}) {
  const [question, setQuestion] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);
  async function submit(event: FormEvent) {
    event.preventDefault();
    const text = question.trim();
    if (!text || busy || blocked) return;
    setQuestion("");
    // A question that could not be asked is given back to edit and send again.
    if (!(await onAsk(text))) setQuestion((typed) => typed || text);
  }
  return (
    <form className="ask" onSubmit={(event) => void submit(event)}>
      <label htmlFor="question" className="visually-hidden">
        Your question
      </label>
      <textarea
        id="question"
        ref={input}
        rows={2}
        maxLength={2000}
        placeholder="Ask a question…"
        value={question}
        onChange={(event) => setQuestion(event.target.value)}
        onKeyDown={(event) => {
          // Enter that confirms an input method's composition (Japanese, Chinese…) is not a send.
          if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) void submit(event);
        }}
      />
      {busy ? (
        <button type="button" className="button danger" onClick={() => { onStop(); input.current?.focus(); }}>
          Stop
        </button>
      ) : (
        <button type="submit" className="button" disabled={!question.trim() || blocked}>
          Ask
        </button>
      )}
    </form>
  );
}
