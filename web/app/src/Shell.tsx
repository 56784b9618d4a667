import { useEffect, useRef, useState } from "react";
import { useClient } from "urql";
import { useApp } from "./context";
import { navigate, useRoute, type Route } from "./router";
import { DocumentsScreen } from "./documents/DocumentsScreen";
import { ChatScreen } from "./chat/ChatScreen";
import { MembersScreen } from "./members/MembersScreen";
import { AccountScreen } from "./account/AccountScreen";
import { OrganizationSwitcher } from "./auth/OrganizationSwitcher";
import { UploadQueue, UploadQueueContext } from "./documents/uploadQueue";
import { AnswerStreams, AnswerStreamsContext } from "./chat/answerStreams";

export function Shell() {
  const { session, info } = useApp();
  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  const admin = info.organization.role === "ADMIN";
  // Uploads and the answer being written outlive the screens: going to the chat and back
  // keeps uploads queued and sending, going to the documents and back keeps the answer
  // being written. The Shell is mounted per session and organisation (App keys it), so a
  // log-out or a switch unmounts it, which cancels them.
  const client = useClient();
  const [uploads] = useState(() => new UploadQueue(session, info.organization.id));
  useEffect(() => uploads.attach(), [uploads]);
  const [answers] = useState(() => new AnswerStreams(client));
  useEffect(() => answers.attach(), [answers]);

  useEffect(() => {
    if (window.location.pathname === "/" || (route.name === "members" && !admin)) {
      navigate({ name: "documents" }, true);
    }
  }, [route.name, admin]);

  // Move focus to the new screen's heading so keyboard and screen-reader users follow along.
  useEffect(() => {
    main.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [route.name]);

  const link = (target: Route, label: string) => (
    <a
      href={target.name === "chat" ? "/chat" : `/${target.name}`}
      aria-current={route.name === target.name ? "page" : undefined}
      onClick={(event) => {
        if (event.metaKey || event.ctrlKey || event.shiftKey) return;
        event.preventDefault();
        navigate(target);
      }}
    >
      {label}
    </a>
  );

  return (
    <div className="shell">
      <a href="#main" className="skip">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">Knowledge Foundry</span>
        <nav aria-label="Main">
          {link({ name: "documents" }, "Documents")}
          {link({ name: "chat", chatId: null }, "Chat")}
          {admin && link({ name: "members" }, "Members")}
        </nav>
        <div className="account">
          <OrganizationSwitcher />
          {link({ name: "account" }, "Account")}
          <button type="button" className="button secondary small" onClick={() => void session.logOut()}>
            Log out
          </button>
        </div>
      </header>
      <main id="main" ref={main} className="content">
        <UploadQueueContext.Provider value={uploads}>
          <AnswerStreamsContext.Provider value={answers}>
            {route.name === "documents" && <DocumentsScreen />}
            {route.name === "chat" && <ChatScreen chatId={route.chatId} />}
            {route.name === "members" && admin && <MembersScreen />}
            {route.name === "account" && <AccountScreen />}
          </AnswerStreamsContext.Provider>
        </UploadQueueContext.Provider>
      </main>
    </div>
  );
}
