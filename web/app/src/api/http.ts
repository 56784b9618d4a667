import { print } from "graphql";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { AppError, codeOf, graphQLError } from "./errors";

export const GRAPHQL_PATH = "/graphql";
/** Sign-up and log-in give up after this long. Never a refresh or switch: one the server
 * completes after the client gave up would leave the client holding a used refresh token,
 * whose next use reads as theft and ends the session. */
export const SIGN_IN_TIMEOUT_MS = 20_000;

export function websocketUrl(location: Location = window.location): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${GRAPHQL_PATH}`;
}

interface GraphQLResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** A single POST outside urql (sign-in and refresh must not loop through the auth fetch). */
export async function postGraphQL<T, V>(
  document: TypedDocumentNode<T, V>,
  variables: V,
  timeoutMs: number | null = null,
): Promise<T> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  let response: Response;
  try {
    response = await fetch(GRAPHQL_PATH, {
      method: "POST",
      headers,
      body: JSON.stringify({ query: print(document), variables }),
      signal: timeoutMs === null ? null : AbortSignal.timeout(timeoutMs),
    });
  } catch {
    throw new AppError("NETWORK_ERROR");
  }
  let body: GraphQLResponse<T>;
  try {
    body = (await response.json()) as GraphQLResponse<T>;
  } catch {
    throw new AppError(response.status >= 500 ? "SERVICE_UNAVAILABLE" : "INTERNAL");
  }
  const first = body.errors?.[0];
  if (first) throw graphQLError(first);
  if (!body.data) throw new AppError("INTERNAL");
  return body.data;
}

const AUTH_CODES = new Set(["UNAUTHENTICATED", "TOKEN_EXPIRED"]);

/** True when a GraphQL response says the access token is missing, expired or revoked. */
export async function isAuthFailure(response: Response): Promise<boolean> {
  if (response.status === 401) return true;
  try {
    const body = (await response.clone().json()) as GraphQLResponse<unknown>;
    return (body.errors ?? []).some((error) => AUTH_CODES.has(codeOf(error)));
  } catch {
    return false;
  }
}
