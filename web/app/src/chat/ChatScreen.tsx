import { useEffect, useRef, useState, type FormEvent } from "react";
import { useClient, useMutation, useQuery } from "urql";
import { describeError, toAppError, type AppError } from "../api/errors";
import { Empty, ErrorNote, Spinner } from "../components/Feedback";
import {
  AnswerDocument,
  ChatMessagesDocument,
  CreateChatDocument,
  type MessageFieldsFragment,
  type SourceFieldsFragment,
} from "../generated/graphql";
import { navigate } from "../router";
import { AnswerText } from "./AnswerText";
import { ChatList } from "./ChatList";
import { SourcePanel } from "./SourcePanel";
import { applyAnswerEvent, failStream, idleStream, startStream, stopStream, type AnswerStream } from "./stream";

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
  const [{ data, fetching, error }, refetch] = useQuery({
    query: ChatMessagesDocument,
    variables: { id: chatId ?? "", first: 200 },
    pause: chatId === null,
  });

  useEffect(() => () => subscription.current?.unsubscribe(), []);
  useEffect(() => setSource(null), [chatId]);

  function ask(targetChatId: string, question: string) {
    subscription.current?.unsubscribe();
    setStream({ chatId: targetChatId, state: startStream(question) });
    const update = (change: (state: AnswerStream) => AnswerStream) =>
      setStream((current) => (current && current.chatId === targetChatId ? { ...current, state: change(current.state) } : current));
    subscription.current = client
      .subscription(AnswerDocument, { chatId: targetChatId, question })
      .subscribe((result) => {
        if (result.data) {
          const event = result.data.answer;
          update((state) => applyAnswerEvent(state, event));
          if (event.__typename === "AnswerDone") {
            refetch({ requestPolicy: "network-only" });
            setChatsVersion((v) => v + 1); // an untitled chat is named after its first question
          }
        } else if (result.error) {
          const appError = toAppError(result.error);
          update((state) => failStream(state, appError.code, appError.message));
        }
      });
  }

  function stop() {
    subscription.current?.unsubscribe();
    subscription.current = null;
    setStream((current) => (current ? { ...current, state: stopStream(current.state) } : current));
  }

  async function submit(question: string) {
    setFailure(null);
    if (chatId) return ask(chatId, question);
    const created = await createChat({ title: null });
    if (created.error || !created.data) return setFailure(toAppError(created.error));
    const id = created.data.createChat.id;
    setChatsVersion((v) => v + 1);
    navigate({ name: "chat", chatId: id });
    ask(id, question);
  }

  const messages = data?.chat?.messages.edges.map((e) => e.node) ?? [];
  const current = stream && stream.chatId === chatId ? stream.state : idleStream;
  const stored = current.message && messages.some((m) => m.id === current.message?.id);
  const showStream = current.status !== "idle" && !stored;
  const busy = current.status === "waiting" || current.status === "streaming";
  // The question of a running answer is stored already; show it once.
  const visible = showStream && busy ? messages.filter((m, i) => !(i === messages.length - 1 && m.role === "USER" && m.content === current.question)) : messages;

  return (
    <div className={source ? "chat with-source" : "chat"}>
      <ChatList activeId={chatId} version={chatsVersion} />
      <section className="conversation" aria-labelledby="chat-heading">
        <h1 id="chat-heading" tabIndex={-1}>
          {data?.chat?.title || (chatId ? "Chat" : "Ask your documents")}
        </h1>
        {failure && <ErrorNote error={failure} />}
        {chatId && fetching && !data && <Spinner label="Loading messages…" />}
        {chatId && error && !data && <ErrorNote error={toAppError(error)} onRetry={() => refetch({ requestPolicy: "network-only" })} />}
        {chatId && data && data.chat === null && <ErrorNote error={{ code: "NOT_FOUND", message: "This chat does not exist." }} />}
        {!showStream && visible.length === 0 && (!chatId || data?.chat) && (
          <Empty title="Ask a question about your documents.">
            <p>Answers quote your documents and cite them with numbers like [1]; select a number to see the passage.</p>
          </Empty>
        )}
        <ol className="messages" aria-label="Messages">
          {visible.map((message) => (
            <MessageItem key={message.id} message={message} onCite={setSource} />
          ))}
          {showStream && (
            <>
              <li className="message user">
                <p className="bubble">{current.question}</p>
              </li>
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
        <QuestionForm busy={busy} onAsk={(q) => void submit(q)} onStop={stop} />
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

function QuestionForm({ busy, onAsk, onStop }: { busy: boolean; onAsk: (question: string) => void; onStop: () => void }) {
  const [question, setQuestion] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);
  function submit(event: FormEvent) {
    event.preventDefault();
    const text = question.trim();
    if (!text || busy) return;
    onAsk(text);
    setQuestion("");
  }
  return (
    <form className="ask" onSubmit={submit}>
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
          if (event.key === "Enter" && !event.shiftKey) submit(event);
        }}
      />
      {busy ? (
        <button type="button" className="button danger" onClick={() => { onStop(); input.current?.focus(); }}>
          Stop
        </button>
      ) : (
        <button type="submit" className="button" disabled={!question.trim()}>
          Ask
        </button>
      )}
    </form>
  );
}
