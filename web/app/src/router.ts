import { useEffect, useState } from "react";

export type Route =
  | { name: "documents" }
  | { name: "chat"; chatId: string | null }
  | { name: "members" }
  | { name: "account" };

/** A path segment decoded, or null when it is not valid percent-encoding (`abc%`). */
function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

export function parseRoute(path: string): Route {
  const chat = /^\/chat(?:\/([^/]+))?\/?$/.exec(path);
  // A mangled chat address opens the chat screen without a chat rather than failing.
  if (chat) return { name: "chat", chatId: chat[1] ? decodeSegment(chat[1]) : null };
  if (path.startsWith("/members")) return { name: "members" };
  if (/^\/account\/?$/.test(path)) return { name: "account" };
  return { name: "documents" };
}

export function pathOf(route: Route): string {
  if (route.name === "chat") return route.chatId ? `/chat/${encodeURIComponent(route.chatId)}` : "/chat";
  return `/${route.name}`;
}

const EVENT = "foundry:navigate";

export function navigate(route: Route, replace = false): void {
  const path = pathOf(route);
  if (window.location.pathname !== path) {
    if (replace) window.history.replaceState(null, "", path);
    else window.history.pushState(null, "", path);
  }
  window.dispatchEvent(new Event(EVENT));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.pathname));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.pathname));
    window.addEventListener("popstate", update);
    window.addEventListener(EVENT, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(EVENT, update);
    };
  }, []);
  return route;
}
