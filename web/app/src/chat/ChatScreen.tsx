import { useContext, useEffect, useRef, useState, useSyncExternalStore, type FormEvent } from "react";
import { useClient, useMutation } from "urql";
import { describeError, toAppError, type AppError } from "../api/errors";
import { Empty, ErrorNote, Spinner } from "../components/Feedback";
import {
  CreateChatDocument,
  type MessageFieldsFragment,
  type SourceFieldsFragment,
} from "../generated/graphql";
import { navigate } from "../router";
import { AnswerText } from "./AnswerText";
import { ChatList } from "./ChatList";
import { SourcePanel } from "./SourcePanel";
import { AnswerStreams, AnswerStreamsContext } from "./answerStreams";
import { idleStream, type AnswerStream } from "./stream";
import { useChatMessages } from "./useChatMessages";

const DEGRADED_NOTE =
  "The AI model was unavailable, so this answer quotes the most relevant passages directly.";

export function ChatScreen({ chatId }: { chatId: string | null }) {
  const client = useClient();
  const [, createChat] = useMutation(CreateChatDocument);
  // The Shell's answer stream outlives this screen (leaving for the documents keeps the
  // answer being written); it is stopped with the session or the organisation. Without one,
  // the screen keeps its own, stopped when the screen goes away.
  const shared = useContext(AnswerStreamsContext);
  const [own] = useState(() => (shared ? null : new AnswerStreams(client)));
  const answers = shared ?? own!;
  useEffect(() => own?.attach(), [own]);
  const stream = useSyncExternalStore(
    (listener) => answers.subscribe(listener),
    () => answers.current,
  );
  const [source, setSource] = useState<SourceFieldsFragment | null>(null);
  const [failure, setFailure] = useState<AppError | null>(null);
  const [chatsVersion, setChatsVersion] = useState(0);
  const { chat, loaded, messages, fetching, error, refetch } = useChatMessages(chatId);
  const loadError = chatId && error ? toAppError(error) : null;
  // The server answers an unknown (or deleted, or someone else's) chat with null and
  // NOT_FOUND: said once, with nothing to retry.
  const missing = Boolean(chatId) && (loadError?.code === "NOT_FOUND" || (loaded && chat === null && !loadError));

  useEffect(() => setSource(null), [chatId]);

  /** False when the question was not asked (the chat could not be created). */
  async function submit(question: string): Promise<boolean> {
    setFailure(null);
    if (chatId) {
      answers.ask(chatId, question);
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
    answers.ask(id, question);
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
  // A finished answer is stored, and an untitled chat is named after its first question:
  // the chats are reloaded once per answer, by the screen shown when it finished or the next
  // one (it may have finished while another screen was shown).
  useEffect(() => {
    if (stream && answers.claimFinished(stream.state)) setChatsVersion((v) => v + 1);
  }, [stream, answers]);
  // The chat's messages are reloaded whenever a finished answer shown is not among them
  // (once per answer on each screen: if it still is not, the streamed one stays shown).
  const reloadedFor = useRef<AnswerStream | null>(null);
  useEffect(() => {
    if (current.status !== "done" || !loaded || stored || reloadedFor.current === current) return;
    reloadedFor.current = current;
    refetch({ requestPolicy: "network-only" });
  }, [current, loaded, stored, refetch]);
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
        {loadError && !missing && <ErrorNote error={loadError} onRetry={() => refetch({ requestPolicy: "network-only" })} />}
        {missing && <ErrorNote error={{ code: "NOT_FOUND", message: "This chat does not exist." }} />}
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
        <QuestionForm busy={busy} blocked={elsewhere !== null} onAsk={submit} onStop={() => answers.stop()} />
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
