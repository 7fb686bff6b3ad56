/**
 * A thin typed `fetch` client for Kick's public API (api.kick.com) and its OAuth 2.1 server (id.kick.com).
 * No maintained SDK covers the official API, so this is the only place Kick's HTTP shapes are spoken.
 * Base URLs come from config (`KICK_API_URL`, `KICK_AUTH_URL`) so tests reach the fake.
 */
import { createHash, randomBytes } from 'node:crypto';
import { httpClientAttributes, tracedCall, type Tracing } from '../../runtime/tracing.js';
import type { KickChannel, KickChatSent, KickEventSubscription, KickSubscriptionCreated, KickTokenResponse, KickUser } from './wire.js';

export const DEFAULT_KICK_API_URL = 'https://api.kick.com';
export const DEFAULT_KICK_AUTH_URL = 'https://id.kick.com';
/** Scopes the OAuth flow asks for: identity, channel info, chat and event subscriptions. */
export const DEFAULT_KICK_SCOPES = 'user:read channel:read chat:write events:subscribe';

/** A non-2xx answer from Kick: status, Kick's message, and for 429 how long to wait. */
export class KickApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'KickApiError';
  }
}

export interface KickClientOptions {
  /** Default DEFAULT_KICK_API_URL. */
  apiUrl?: string;
  /** The bearer token to call with (asked before every request, so a refreshed token is picked up). */
  accessToken(): Promise<string>;
  /** Called on a 401: refresh and return the new token, or undefined to give up. Called at most once per request. */
  onUnauthorized?(staleToken: string): Promise<string | undefined>;
  fetch?: typeof fetch;
  /**
   * The host's tracer: each call is then a client span `kick.api <METHOD> <path>` (a root outside a
   * message, a child of the message's span inside one).
   */
  tracing?: Tracing;
}

/** The API calls BitBrat makes. */
export interface KickClient {
  /** The users the token belongs to (no ids) or the given users. */
  getUsers(ids?: number[]): Promise<KickUser[]>;
  getChannels(slugs: string[]): Promise<KickChannel[]>;
  sendChat(message: {
    broadcasterUserId: number;
    content: string;
    replyToMessageId?: string;
    type?: 'user' | 'bot';
  }): Promise<KickChatSent>;
  listSubscriptions(broadcasterUserId?: number): Promise<KickEventSubscription[]>;
  createSubscriptions(
    broadcasterUserId: number,
    events: ReadonlyArray<{ name: string; version: number }>,
  ): Promise<KickSubscriptionCreated[]>;
  deleteSubscriptions(ids: string[]): Promise<void>;
  /** The PEM key webhooks are signed with (needs no token). */
  getPublicKey(): Promise<string>;
}

const trimSlash = (url: string) => url.replace(/\/+$/, '');

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

async function failure(response: Response): Promise<KickApiError> {
  let detail = '';
  try {
    const body = (await response.json()) as { message?: unknown; error?: unknown; error_description?: unknown };
    detail = String(body.error_description ?? body.message ?? body.error ?? '');
  } catch {
    detail = '';
  }
  return new KickApiError(
    response.status,
    `Kick answered HTTP ${response.status}${detail ? `: ${detail}` : ''}`,
    response.status === 429 ? (retryAfterMs(response.headers.get('retry-after')) ?? 1_000) : undefined,
  );
}

/** Creates the API client. Errors are KickApiError; nothing is retried here except one refresh on 401. */
export function createKickClient(options: KickClientOptions): KickClient {
  const base = trimSlash(options.apiUrl ?? DEFAULT_KICK_API_URL);
  const doFetch = options.fetch ?? fetch;

  const { tracing } = options;
  type CallInit = { query?: Array<[string, string]>; body?: unknown; auth?: boolean };

  /** One API call; Kick's paths hold no ids (those go in the query), so the path names the span. */
  const call = <T>(method: string, path: string, init: CallInit = {}): Promise<T> =>
    tracedCall(
      tracing,
      `kick.api ${method} ${path}`,
      {
        attributes: () => ({ ...httpClientAttributes(method, `${base}${path}`), 'bitbrat.platform': 'kick' }),
        describeError: (error) => ({
          type: error instanceof KickApiError ? String(error.status) : error instanceof Error ? error.name : 'Error',
          message: error instanceof Error ? error.message : String(error),
        }),
      },
      (span) => send<T>(method, path, init, (status) => span?.setAttributes({ 'http.response.status_code': status })),
    );

  const send = async <T>(method: string, path: string, init: CallInit, onStatus: (status: number) => void): Promise<T> => {
    const url = new URL(`${base}${path}`);
    for (const [key, value] of init.query ?? []) url.searchParams.append(key, value);
    const request = async (token: string | undefined) =>
      await doFetch(url, {
        method,
        headers: {
          accept: 'application/json',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
        signal: AbortSignal.timeout(15_000),
      });
    const token = init.auth === false ? undefined : await options.accessToken();
    let response = await request(token);
    if (response.status === 401 && token && options.onUnauthorized) {
      const fresh = await options.onUnauthorized(token);
      if (fresh) response = await request(fresh);
    }
    onStatus(response.status);
    if (!response.ok) throw await failure(response);
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? (JSON.parse(text) as { data: T }).data : undefined) as T;
  };

  return {
    getUsers: async (ids = []) => await call<KickUser[]>('GET', '/public/v1/users', { query: ids.map((id) => ['id', String(id)]) }),
    getChannels: async (slugs) =>
      slugs.length === 0 ? [] : await call<KickChannel[]>('GET', '/public/v1/channels', { query: slugs.map((slug) => ['slug', slug]) }),
    sendChat: async (message) =>
      await call<KickChatSent>('POST', '/public/v1/chat', {
        body: {
          broadcaster_user_id: message.broadcasterUserId,
          content: message.content,
          type: message.type ?? 'user',
          ...(message.replyToMessageId ? { reply_to_message_id: message.replyToMessageId } : {}),
        },
      }),
    listSubscriptions: async (broadcasterUserId) =>
      (await call<KickEventSubscription[]>('GET', '/public/v1/events/subscriptions', {
        query: broadcasterUserId ? [['broadcaster_user_id', String(broadcasterUserId)]] : [],
      })) ?? [],
    createSubscriptions: async (broadcasterUserId, events) =>
      (await call<KickSubscriptionCreated[]>('POST', '/public/v1/events/subscriptions', {
        body: { broadcaster_user_id: broadcasterUserId, events, method: 'webhook' },
      })) ?? [],
    deleteSubscriptions: async (ids) => {
      if (ids.length > 0) await call<void>('DELETE', '/public/v1/events/subscriptions', { query: ids.map((id) => ['id', id]) });
    },
    getPublicKey: async () => (await call<{ public_key: string }>('GET', '/public/v1/public-key', { auth: false })).public_key,
  };
}

// ------------------------------------------------------------------------------------------- OAuth

/** A PKCE pair: the verifier stays on the server, the S256 challenge goes in the authorize URL. */
export interface PkcePair {
  verifier: string;
  challenge: string;
}

/** The S256 challenge of a verifier (RFC 7636 §4.2). */
export const pkceChallenge = (verifier: string): string => createHash('sha256').update(verifier).digest('base64url');

/** A fresh PKCE pair (a 43-character verifier), or the pair of a given verifier. */
export function createPkcePair(verifier: string = randomBytes(32).toString('base64url')): PkcePair {
  return { verifier, challenge: pkceChallenge(verifier) };
}

/** The id.kick.com authorize URL for the code flow with PKCE S256. */
export function kickAuthorizeUrl(input: {
  authUrl?: string;
  clientId: string;
  redirectUri: string;
  scopes: string[];
  state: string;
  challenge: string;
}): string {
  const url = new URL(`${trimSlash(input.authUrl ?? DEFAULT_KICK_AUTH_URL)}/oauth/authorize`);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', input.clientId);
  url.searchParams.set('redirect_uri', input.redirectUri);
  url.searchParams.set('scope', input.scopes.join(' '));
  url.searchParams.set('state', input.state);
  url.searchParams.set('code_challenge', input.challenge);
  url.searchParams.set('code_challenge_method', 'S256');
  return url.toString();
}

async function tokenRequest(
  authUrl: string | undefined,
  form: Record<string, string>,
  fetchImpl: typeof fetch = fetch,
): Promise<KickTokenResponse> {
  const response = await fetchImpl(`${trimSlash(authUrl ?? DEFAULT_KICK_AUTH_URL)}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(form).toString(),
    signal: AbortSignal.timeout(15_000),
  });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as KickTokenResponse;
}

/** Exchanges an authorization code (with its PKCE verifier) for tokens. */
export async function exchangeKickCode(input: {
  authUrl?: string;
  clientId: string;
  clientSecret: string;
  code: string;
  redirectUri: string;
  verifier: string;
  fetch?: typeof fetch;
}): Promise<KickTokenResponse> {
  return await tokenRequest(
    input.authUrl,
    {
      grant_type: 'authorization_code',
      client_id: input.clientId,
      client_secret: input.clientSecret,
      code: input.code,
      redirect_uri: input.redirectUri,
      code_verifier: input.verifier,
    },
    input.fetch,
  );
}

/** Trades a refresh token for a new access/refresh pair (Kick rotates the refresh token). */
export async function refreshKickToken(input: {
  authUrl?: string;
  clientId: string;
  clientSecret: string;
  refreshToken: string;
  fetch?: typeof fetch;
}): Promise<KickTokenResponse> {
  return await tokenRequest(
    input.authUrl,
    { grant_type: 'refresh_token', client_id: input.clientId, client_secret: input.clientSecret, refresh_token: input.refreshToken },
    input.fetch,
  );
}

/** Revokes a token at Kick (used when an account is disconnected). */
export async function revokeKickToken(input: {
  authUrl?: string;
  token: string;
  hint?: 'access_token' | 'refresh_token';
  fetch?: typeof fetch;
}): Promise<void> {
  const url = new URL(`${trimSlash(input.authUrl ?? DEFAULT_KICK_AUTH_URL)}/oauth/revoke`);
  url.searchParams.set('token', input.token);
  if (input.hint) url.searchParams.set('token_hint_type', input.hint);
  const response = await (input.fetch ?? fetch)(url, { method: 'POST', signal: AbortSignal.timeout(15_000) });
  if (!response.ok) throw await failure(response);
}
