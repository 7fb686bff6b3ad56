/**
 * A fake Kick on loopback: the OAuth server (id.kick.com: /oauth/authorize, /oauth/token with the
 * authorization_code grant checked against its PKCE S256 challenge and the refresh_token grant,
 * /oauth/revoke), the public API (api.kick.com: /public/v1/users, /public/v1/channels, /public/v1/chat,
 * /public/v1/events/subscriptions, /public/v1/public-key) with Kick's `{ data, message }` answers and 429s,
 * and a webhook sender that signs deliveries with its own RSA key the way Kick does (PKCS#1 v1.5, SHA-256
 * over `messageId.timestamp.body`). One server answers both base URLs. Every request is recorded.
 */
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenLoopback, readBody, sendJson } from './http.js';

export interface FakeKickUser {
  user_id: number;
  name: string;
  email?: string;
  profile_picture?: string;
}

export interface FakeKickChannel {
  broadcaster_user_id: number;
  slug: string;
  stream_title: string;
  stream: { is_live: boolean; start_time: string; viewer_count: number };
}

export interface FakeKickSubscription {
  id: string;
  app_id: string;
  broadcaster_user_id: number;
  event: string;
  version: number;
  method: 'webhook';
  created_at: string;
  updated_at: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: string;
  /** The user the bearer token belongs to, when it is a live access token. */
  userId?: number;
}

export interface SentChat {
  broadcaster_user_id?: number;
  content: string;
  reply_to_message_id?: string;
  type: string;
  senderUserId: number;
  message_id: string;
}

interface Token {
  userId: number;
  scope: string;
  expiresAt: number;
  refreshToken: string;
}

export interface FakeKickOptions {
  clientId?: string;
  clientSecret?: string;
  /** Access tokens live this long (seconds); Kick's are 7200. */
  expiresIn?: number;
}

export interface WebhookDelivery {
  status: number;
  body: string;
  messageId: string;
}

export interface FakeKick {
  readonly url: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** The PEM of the key webhooks are signed with (also at /public/v1/public-key). */
  readonly publicKeyPem: string;
  readonly requests: RecordedRequest[];
  readonly chats: SentChat[];
  readonly subscriptions: FakeKickSubscription[];
  readonly users: Map<number, FakeKickUser>;
  readonly channels: Map<string, FakeKickChannel>;
  /** The next `n` API calls answer 429 with `Retry-After` (seconds). */
  rateLimitNext(n: number, retryAfterSeconds?: number): void;
  /** Issues an access/refresh pair for a user directly (what a finished OAuth flow yields). */
  issueToken(userId: number, scope?: string, expiresIn?: number): { accessToken: string; refreshToken: string };
  /** Whether the token still works (not revoked, not expired). */
  tokenValid(accessToken: string): boolean;
  /** Lets the authorize step succeed for `userId` (the user who "logs in" at Kick). */
  loginAs(userId: number): void;
  /** Signs and POSTs one webhook to `target`, as Kick would. */
  deliver(
    target: string,
    event: {
      type: string;
      payload: Record<string, unknown>;
      messageId?: string;
      timestamp?: string;
      version?: string;
      subscriptionId?: string;
      tamper?: 'body' | 'signature';
    },
  ): Promise<WebhookDelivery>;
  requestsTo(path: string, method?: string): RecordedRequest[];
  stop(): Promise<void>;
}

const base64url = (buffer: Buffer) => buffer.toString('base64url');

/** Starts the fake on a free loopback port. */
export async function startFakeKick(options: FakeKickOptions = {}): Promise<FakeKick> {
  const clientId = options.clientId ?? 'kick-client-id';
  const clientSecret = options.clientSecret ?? 'kick-client-secret';
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const requests: RecordedRequest[] = [];
  const chats: SentChat[] = [];
  const subscriptions: FakeKickSubscription[] = [];
  const users = new Map<number, FakeKickUser>();
  const channels = new Map<string, FakeKickChannel>();
  const tokens = new Map<string, Token>();
  const refreshTokens = new Map<string, string>();
  const codes = new Map<string, { userId: number; challenge: string; redirectUri: string; scope: string }>();
  let loginUser: number | undefined;
  let limited = 0;
  let retryAfter = 1;
  let nextId = 1;

  const issueToken = (
    userId: number,
    scope = 'user:read channel:read chat:write events:subscribe',
    expiresIn = options.expiresIn ?? 7200,
  ) => {
    const accessToken = `kat_${base64url(randomBytes(18))}`;
    const refreshToken = `krt_${base64url(randomBytes(18))}`;
    tokens.set(accessToken, { userId, scope, expiresAt: Date.now() + expiresIn * 1000, refreshToken });
    refreshTokens.set(refreshToken, accessToken);
    return { accessToken, refreshToken };
  };

  const tokenOf = (req: IncomingMessage): Token | undefined => {
    const header = req.headers.authorization ?? '';
    const token = tokens.get(header.replace(/^Bearer\s+/i, ''));
    return token && token.expiresAt > Date.now() ? token : undefined;
  };

  const oauthError = (res: ServerResponse, status: number, error: string, description: string) =>
    sendJson(res, status, { error, error_description: description });

  /** Answers a token grant with a fresh pair for `userId`, as Kick's token endpoint does. */
  const grantTokens = (res: ServerResponse, userId: number, scope: string) => {
    const issued = issueToken(userId, scope);
    return sendJson(res, 200, {
      access_token: issued.accessToken,
      token_type: 'Bearer',
      refresh_token: issued.refreshToken,
      expires_in: options.expiresIn ?? 7200,
      scope,
    });
  };

  const handleToken = (res: ServerResponse, form: URLSearchParams) => {
    if (form.get('client_id') !== clientId || form.get('client_secret') !== clientSecret)
      return oauthError(res, 401, 'invalid_client', 'client authentication failed');
    const grant = form.get('grant_type');
    if (grant === 'authorization_code') {
      const code = codes.get(form.get('code') ?? '');
      if (!code) return oauthError(res, 400, 'invalid_grant', 'unknown or used code');
      codes.delete(form.get('code')!);
      if (code.redirectUri !== form.get('redirect_uri')) return oauthError(res, 400, 'invalid_grant', 'redirect_uri mismatch');
      const verifier = form.get('code_verifier') ?? '';
      if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || base64url(createHash('sha256').update(verifier).digest()) !== code.challenge) {
        return oauthError(res, 400, 'invalid_grant', 'code_verifier does not match the code_challenge');
      }
      return grantTokens(res, code.userId, code.scope);
    }
    if (grant === 'refresh_token') {
      const old = refreshTokens.get(form.get('refresh_token') ?? '');
      const previous = old ? tokens.get(old) : undefined;
      if (!old || !previous) return oauthError(res, 400, 'invalid_grant', 'unknown refresh token');
      refreshTokens.delete(form.get('refresh_token')!);
      tokens.delete(old);
      return grantTokens(res, previous.userId, previous.scope);
    }
    return oauthError(res, 400, 'unsupported_grant_type', `grant_type ${grant ?? '(none)'} is not supported`);
  };

  const handleApi = (req: IncomingMessage, res: ServerResponse, url: URL, body: string, token: Token) => {
    const path = url.pathname;
    if (path === '/public/v1/users' && req.method === 'GET') {
      const ids = url.searchParams.getAll('id').map(Number);
      const list = ids.length
        ? ids.map((id) => users.get(id)).filter(Boolean)
        : [users.get(token.userId) ?? { user_id: token.userId, name: `user${token.userId}` }];
      return sendJson(res, 200, { data: list, message: 'OK' });
    }
    if (path === '/public/v1/channels' && req.method === 'GET') {
      const slugs = url.searchParams.getAll('slug');
      const list = slugs.map((slug) => channels.get(slug.toLowerCase())).filter(Boolean);
      return sendJson(res, 200, { data: list, message: 'OK' });
    }
    if (path === '/public/v1/chat' && req.method === 'POST') {
      if (!token.scope.split(' ').includes('chat:write')) return sendJson(res, 403, { data: {}, message: 'missing scope chat:write' });
      const parsed = JSON.parse(body || '{}') as {
        broadcaster_user_id?: number;
        content?: string;
        reply_to_message_id?: string;
        type?: string;
      };
      if (typeof parsed.content !== 'string' || parsed.content.length === 0 || parsed.content.length > 500)
        return sendJson(res, 400, { data: {}, message: 'content must be 1 to 500 characters' });
      if (parsed.type !== 'user' && parsed.type !== 'bot') return sendJson(res, 400, { data: {}, message: 'type must be user or bot' });
      if (parsed.type === 'user' && typeof parsed.broadcaster_user_id !== 'number')
        return sendJson(res, 400, { data: {}, message: 'broadcaster_user_id is required for type user' });
      const messageId = `msg-${nextId++}`;
      chats.push({ ...parsed, content: parsed.content, type: parsed.type, senderUserId: token.userId, message_id: messageId });
      return sendJson(res, 200, { data: { is_sent: true, message_id: messageId }, message: 'OK' });
    }
    if (path === '/public/v1/events/subscriptions') {
      if (req.method === 'GET') {
        const broadcaster = url.searchParams.get('broadcaster_user_id');
        return sendJson(res, 200, {
          data: subscriptions.filter((sub) => !broadcaster || String(sub.broadcaster_user_id) === broadcaster),
          message: 'OK',
        });
      }
      if (req.method === 'POST') {
        const parsed = JSON.parse(body || '{}') as {
          broadcaster_user_id?: number;
          events?: Array<{ name: string; version: number }>;
          method?: string;
        };
        if (parsed.method !== 'webhook') return sendJson(res, 400, { data: [], message: 'method must be webhook' });
        if (!Array.isArray(parsed.events) || parsed.events.length === 0)
          return sendJson(res, 400, { data: [], message: 'events is required' });
        const broadcaster = parsed.broadcaster_user_id ?? token.userId;
        const data = parsed.events.map((event) => {
          const now = new Date().toISOString();
          const sub: FakeKickSubscription = {
            id: `sub-${nextId++}`,
            app_id: clientId,
            broadcaster_user_id: broadcaster,
            event: event.name,
            version: event.version,
            method: 'webhook',
            created_at: now,
            updated_at: now,
          };
          subscriptions.push(sub);
          return { name: event.name, version: event.version, subscription_id: sub.id };
        });
        return sendJson(res, 200, { data, message: 'OK' });
      }
      if (req.method === 'DELETE') {
        for (const id of url.searchParams.getAll('id')) {
          const index = subscriptions.findIndex((sub) => sub.id === id);
          if (index >= 0) subscriptions.splice(index, 1);
        }
        res.writeHead(204).end();
        return;
      }
    }
    return sendJson(res, 404, { data: {}, message: `no route ${req.method} ${path}` });
  };

  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://fake.kick');
      const body = await readBody(req);
      const token = tokenOf(req);
      requests.push({
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body,
        ...(token ? { userId: token.userId } : {}),
      });

      if (url.pathname === '/oauth/authorize' && req.method === 'GET') {
        const q = url.searchParams;
        const redirect = q.get('redirect_uri');
        if (q.get('client_id') !== clientId || !redirect || q.get('response_type') !== 'code')
          return sendJson(res, 400, { error: 'Invalid request' });
        if (q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge') || !q.get('state'))
          return sendJson(res, 400, { error: 'Invalid request' });
        if (loginUser === undefined) return sendJson(res, 401, { error: 'nobody is logged in at the fake' });
        const code = base64url(randomBytes(12));
        codes.set(code, { userId: loginUser, challenge: q.get('code_challenge')!, redirectUri: redirect, scope: q.get('scope') ?? '' });
        const back = new URL(redirect);
        back.searchParams.set('code', code);
        back.searchParams.set('state', q.get('state')!);
        res.writeHead(302, { location: back.toString() }).end();
        return;
      }
      if (url.pathname === '/oauth/token' && req.method === 'POST') return handleToken(res, new URLSearchParams(body));
      if (url.pathname === '/oauth/revoke' && req.method === 'POST') {
        const value = url.searchParams.get('token') ?? '';
        const access = tokens.has(value) ? value : refreshTokens.get(value);
        if (!access) return sendJson(res, 400, { error: 'Invalid request' });
        const held = tokens.get(access);
        tokens.delete(access);
        if (held) refreshTokens.delete(held.refreshToken);
        res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
        return;
      }
      if (url.pathname === '/public/v1/public-key' && req.method === 'GET')
        return sendJson(res, 200, { data: { public_key: publicKeyPem }, message: 'OK' });
      if (url.pathname.startsWith('/public/v1/')) {
        if (limited > 0) {
          limited -= 1;
          return sendJson(res, 429, { data: {}, message: 'Too Many Requests' }, { 'retry-after': String(retryAfter) });
        }
        if (!token) return sendJson(res, 401, { data: {}, message: 'Unauthorized' });
        return handleApi(req, res, url, body, token);
      }
      sendJson(res, 404, { message: 'not found' });
    })().catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { message: String(error) });
    });
  });
  const listening = await listenLoopback(server);

  return {
    url: `http://127.0.0.1:${listening.port}`,
    clientId,
    clientSecret,
    publicKeyPem,
    requests,
    chats,
    subscriptions,
    users,
    channels,
    rateLimitNext(n, seconds = 1) {
      limited = n;
      retryAfter = seconds;
    },
    issueToken,
    tokenValid: (accessToken) => (tokens.get(accessToken)?.expiresAt ?? 0) > Date.now(),
    loginAs(userId) {
      loginUser = userId;
    },
    async deliver(target, event) {
      const messageId = event.messageId ?? `01J${base64url(randomBytes(10))}`;
      const timestamp = event.timestamp ?? new Date().toISOString();
      const body = JSON.stringify(event.payload);
      const signature = sign('sha256', Buffer.from(`${messageId}.${timestamp}.${body}`), privateKey).toString('base64');
      const sent = event.tamper === 'body' ? body.replace(/.$/, ' }') : body;
      const response = await fetch(target, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'Kick-Event-Type': event.type,
          'Kick-Event-Version': event.version ?? '1',
          'Kick-Event-Subscription-Id': event.subscriptionId ?? 'sub-unknown',
          'Kick-Event-Message-Id': messageId,
          'Kick-Event-Message-Timestamp': timestamp,
          'Kick-Event-Signature': event.tamper === 'signature' ? signature.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) : signature,
        },
        body: sent,
      });
      return { status: response.status, body: await response.text(), messageId };
    },
    requestsTo: (path, method) => requests.filter((request) => request.path === path && (!method || request.method === method)),
    stop: listening.stop,
  };
}
