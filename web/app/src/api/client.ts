import { Kind, type DocumentNode } from "graphql";
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "urql";
import type { Session } from "../auth/session";
import { GRAPHQL_PATH, isAuthFailure } from "./http";
import { SocketPool, reconnecting, single } from "./sockets";

/** fetch with the access token; on UNAUTHENTICATED/TOKEN_EXPIRED refresh once and retry.
 * Only a refusal of the token still current refreshes: a response to a request sent with a
 * token since replaced (several were in flight when it changed) is sent again with the
 * current one, not answered with yet another rotation.
 * Bound to one organisation: once the session is in another, nothing more is sent (a
 * request of the old organisation's screens must never go out with the new one's token). */
export function authenticatedFetch(session: Session, organizationId: string | null = null): typeof fetch {
  const moved = () => organizationId !== null && session.info?.organization.id !== organizationId;
  return async (input, init) => {
    let sent: string | null = null;
    const send = async (): Promise<Response> => {
      const headers = new Headers(init?.headers);
      const token = await session.validAccessToken();
      // After the wait: a refresh in flight may have been a switch.
      if (moved()) throw new TypeError("the session moved to another organisation");
      sent = token;
      if (token) headers.set("authorization", `Bearer ${token}`);
      return fetch(input, { ...init, headers });
    };
    const response = await send();
    if (!(await isAuthFailure(response)) || !session.canResume) return response;
    if (sent !== session.accessToken || (await session.refresh())) return send();
    return response;
  };
}

export interface ApiClients {
  client: Client;
  sockets: { dispose(): void };
}

/** Whether the operation is the `answer` subscription: asking is not idempotent, so it
 * must never be subscribed again by a reconnect. */
export function asksAQuestion(query: DocumentNode): boolean {
  return query.definitions.some(
    (definition) =>
      definition.kind === Kind.OPERATION_DEFINITION &&
      definition.selectionSet.selections.some((field) => field.kind === Kind.FIELD && field.name.value === "answer"),
  );
}

/** urql over HTTP for queries and mutations, graphql-ws for subscriptions: one connection
 * that reconnects for streams that only listen, and one that does not for answers. */
export function createApiClients(session: Session): ApiClients {
  const organizationId = session.info?.organization.id ?? null;
  const listening = new SocketPool(session, reconnecting, organizationId);
  const asking = new SocketPool(session, single, organizationId);
  const sockets = {
    dispose() {
      listening.dispose();
      asking.dispose();
    },
  };
  const client = new Client({
    url: GRAPHQL_PATH,
    fetch: authenticatedFetch(session, organizationId),
    requestPolicy: "cache-and-network",
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request, operation) {
          const payload = { ...request, query: request.query ?? "" };
          const pool = asksAQuestion(operation.query) ? asking : listening;
          return {
            subscribe(sink) {
              return { unsubscribe: pool.subscribe(payload, sink) };
            },
          };
        },
      }),
    ],
  });
  return { client, sockets };
}
