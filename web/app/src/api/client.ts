import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "urql";
import type { Session } from "../auth/session";
import { GRAPHQL_PATH, isAuthFailure } from "./http";
import { SocketPool } from "./sockets";

/** fetch with the access token; on UNAUTHENTICATED/TOKEN_EXPIRED refresh once and retry. */
export function authenticatedFetch(session: Session): typeof fetch {
  return async (input, init) => {
    const send = async (): Promise<Response> => {
      const headers = new Headers(init?.headers);
      const token = await session.validAccessToken();
      if (token) headers.set("authorization", `Bearer ${token}`);
      return fetch(input, { ...init, headers });
    };
    const response = await send();
    if ((await isAuthFailure(response)) && session.canResume && (await session.refresh())) {
      return send();
    }
    return response;
  };
}

export interface ApiClients {
  client: Client;
  sockets: SocketPool;
}

/** urql over HTTP for queries and mutations, graphql-ws for subscriptions. */
export function createApiClients(session: Session): ApiClients {
  const sockets = new SocketPool(session);
  const client = new Client({
    url: GRAPHQL_PATH,
    fetch: authenticatedFetch(session),
    requestPolicy: "cache-and-network",
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const operation = { ...request, query: request.query ?? "" };
          return {
            subscribe(sink) {
              return { unsubscribe: sockets.subscribe(operation, sink) };
            },
          };
        },
      }),
    ],
  });
  return { client, sockets };
}
