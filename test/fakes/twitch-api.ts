/**
 * A fake Twitch on one loopback port, speaking the wire protocol Twurple 8.1.4 uses when
 * `TWURPLE_MOCK_API_PORT` points at it:
 *
 * - id.twitch.tv OAuth2 → `/auth/validate`, `/auth/token`, `/auth/revoke`
 * - Helix → `/mock/<endpoint>` (users, streams, channels, shoutouts, moderation: chat deletes, bans and
 *   timeouts, moderators), except `eventsub/subscriptions`, which Twurple
 *   sends unprefixed (`/eventsub/subscriptions`); both spellings are served
 * - the EventSub WebSocket → `ws://127.0.0.1:<port>/ws`
 *
 * Everything received is recorded so tests can assert on it. Helix responses carry the
 * `Ratelimit-*` headers; without them Twurple's rate limiter stalls after the first call.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket } from 'ws';

export interface FakeTwitchOptions {
  /** Default `fake-client-id`. */
  clientId?: string;
  /** Default `fake-client-secret`. */
  clientSecret?: string;
  /** Sent in session_welcome. Default 10 (Twitch's minimum). */
  keepaliveTimeoutSeconds?: number;
  /** How often keepalives are sent. Default half the keepalive timeout. */
  keepaliveIntervalMs?: number;
  /** After session_reconnect, the old socket is closed this long after the client welcomed on the new one, if the client has not closed it. Default 1 000. */
  reconnectGraceMs?: number;
  /** Issue a new refresh token on every refresh (Twitch may or may not). Default true. */
  rotateRefreshTokens?: boolean;
  /** Lifetime of issued access tokens in seconds. Default 14 400. */
  tokenExpiresInSeconds?: number;
  /** EventSub WebSocket limits Twitch enforces per client id and user: default 3 connections, 300 subscriptions per connection, total cost 10. */
  maxConnectionsPerUser?: number;
  maxSubscriptionsPerConnection?: number;
  maxTotalCost?: number;
}

export interface FakeUser {
  id: string;
  login: string;
  displayName?: string;
  profileImageUrl?: string;
}

export interface FakeStream {
  id?: string;
  title?: string;
  gameId?: string;
  gameName?: string;
  viewerCount?: number;
  startedAt?: string;
  language?: string;
}

export interface FakeChannel {
  title?: string;
  gameId?: string;
  gameName?: string;
  language?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  status: number;
  at: number;
}

export interface FakeSubscription {
  id: string;
  status: string;
  type: string;
  version: string;
  condition: Record<string, string>;
  created_at: string;
  transport: { method: 'websocket'; session_id: string; connected_at?: string; disconnected_at?: string };
  cost: number;
}

/** A ban or timeout in effect (`endsAt` null for a ban). */
export interface FakeBan {
  broadcasterId: string;
  userId: string;
  moderatorId: string;
  reason: string;
  endsAt: number | null;
  at: number;
}

/** A chat message a moderator deleted. */
export interface FakeDeletedMessage {
  broadcasterId: string;
  messageId: string;
  moderatorId: string;
  at: number;
}

/** A shoutout Twitch accepted. */
export interface FakeShoutout {
  fromBroadcasterId: string;
  toBroadcasterId: string;
  moderatorId: string;
  at: number;
}

export interface FakeSession {
  id: string;
  status: 'connected' | 'reconnecting' | 'disconnected';
  connectedAt: string;
  /** Sockets that belonged to this session, oldest first; the last open one receives messages. */
  sockets: WebSocket[];
  /** The user whose token created the session's first subscription; Twitch ties the connection to them. */
  userId?: string;
  /** Keepalives not sent when true (set by stopKeepalives). */
  keepalivesStopped: boolean;
  timer?: NodeJS.Timeout;
  /** How the session's sockets ended: `client` closed it, the `server` did, or `handover` after reconnect. */
  closes: Array<{ by: 'client' | 'server'; code: number; handover: boolean }>;
}

export interface WsFrame {
  direction: 'out' | 'in';
  sessionId: string;
  data: any;
  at: number;
}

interface TokenRecord {
  accessToken: string;
  refreshToken?: string;
  userId?: string;
  scopes: string[];
  expiresAt: number;
  valid: boolean;
}

/** Scopes Twitch requires to create each EventSub subscription type (any one of a set suffices). */
const REQUIRED_SCOPES: Record<string, string[][]> = {
  'channel.follow': [['moderator:read:followers', 'moderator:manage:followers']],
  'channel.subscribe': [['channel:read:subscriptions']],
  'channel.subscription.gift': [['channel:read:subscriptions']],
  'channel.subscription.message': [['channel:read:subscriptions']],
  'channel.cheer': [['bits:read']],
  'channel.channel_points_custom_reward_redemption.add': [['channel:read:redemptions', 'channel:manage:redemptions']],
};

export interface FakeTwitch {
  readonly port: number;
  /** `http://localhost:<port>` */
  readonly url: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Every HTTP request, in order. */
  readonly requests: RecordedRequest[];
  /** Every EventSub subscription ever created (including disabled and deleted ones). */
  readonly subscriptions: FakeSubscription[];
  /** Every EventSub WebSocket session, in order of creation. */
  readonly sessions: FakeSession[];
  /** Every frame sent or received on any EventSub socket. */
  readonly frames: WsFrame[];
  /** Every shoutout Twitch accepted, in order. */
  readonly shoutouts: FakeShoutout[];
  /** Bans and timeouts in effect, by `broadcasterId:userId` (lifting one removes it). */
  readonly bans: Map<string, FakeBan>;
  /** Every chat message deleted through `DELETE /moderation/chat`, in order. */
  readonly deletedMessages: FakeDeletedMessage[];

  addUser(user: FakeUser): void;
  /** Marks the user live with this stream, or offline with `null`. */
  setStream(userId: string, stream: FakeStream | null): void;
  setChannel(userId: string, channel: FakeChannel): void;
  /**
   * Gives Helix a token bucket like Twitch's: `points` requests per window, announced in the `Ratelimit-*`
   * headers; past it requests get 429 until the bucket refills. `undefined` removes the limit.
   */
  limitHelix(bucket: { points: number; windowMs: number } | undefined): void;
  /** Makes `userId` a moderator of the broadcaster's channel (channel.follow and shoutouts check it). */
  addModerator(broadcasterId: string, userId: string): void;
  /** A valid user token (as if obtained by the OAuth flow). */
  issueToken(userId: string, options?: { scopes?: string[]; expiresInSeconds?: number }): { accessToken: string; refreshToken: string };
  /** An authorization code the `/auth/token` authorization_code grant accepts once. */
  createAuthorizationCode(userId: string, options?: { scopes?: string[]; redirectUri?: string }): string;
  /** Makes `/auth/validate` and Helix reject the token from now on (as if expired or revoked). */
  invalidateAccessToken(accessToken: string): void;
  /** Makes the refresh grant reject this refresh token. */
  invalidateRefreshToken(refreshToken: string): void;

  /** Subscriptions that are enabled now. */
  activeSubscriptions(type?: string): FakeSubscription[];
  /** The current session of the most recent connection, if connected. */
  currentSession(): FakeSession | undefined;
  /**
   * Sends a `notification` for the enabled subscription(s) of `type` (and `version` when given) to the
   * socket of their session. Returns the message ids sent; throws when nothing is subscribed.
   */
  notify(
    type: string,
    version: string | undefined,
    event: Record<string, unknown>,
    options?: { messageId?: string; timestamp?: string },
  ): string[];
  /** Sends the exact frame of an earlier notification again (Twitch may redeliver). */
  sendDuplicate(messageId: string): void;
  /** Sends session_reconnect on every connected session; resolves when the clients have welcomed on the new sockets. */
  sendReconnect(options?: { timeoutMs?: number }): Promise<void>;
  /** Stops keepalives on the currently connected sessions so the client's keepalive timer fires. */
  stopKeepalives(): void;
  /** Revokes the enabled subscriptions of `type`: their status changes and a `revocation` message is sent. */
  revoke(type: string, status?: string): void;
  /** Closes every EventSub socket from the server side (code 4000 by default). */
  dropConnections(code?: number): void;
  /** Resolves when `predicate` holds, polling. */
  waitFor<T>(predicate: () => T | undefined | false | null, timeoutMs?: number, what?: string): Promise<T>;
  stop(): Promise<void>;
}

/** Starts the fake on a free loopback port. */
export async function startFakeTwitch(options: FakeTwitchOptions = {}): Promise<FakeTwitch> {
  const clientId = options.clientId ?? 'fake-client-id';
  const clientSecret = options.clientSecret ?? 'fake-client-secret';
  const keepaliveTimeoutSeconds = options.keepaliveTimeoutSeconds ?? 10;
  const keepaliveIntervalMs = options.keepaliveIntervalMs ?? Math.max(50, (keepaliveTimeoutSeconds * 1000) / 2);
  const reconnectGraceMs = options.reconnectGraceMs ?? 1_000;
  const rotateRefreshTokens = options.rotateRefreshTokens ?? true;
  const tokenLifetime = options.tokenExpiresInSeconds ?? 14_400;
  const maxConnectionsPerUser = options.maxConnectionsPerUser ?? 3;
  const maxSubscriptionsPerConnection = options.maxSubscriptionsPerConnection ?? 300;
  const maxTotalCost = options.maxTotalCost ?? 10;
  const moderators = new Map<string, Set<string>>();
  const shoutouts: FakeShoutout[] = [];
  const bans = new Map<string, FakeBan>();
  let bucket: { points: number; windowMs: number; remaining: number; resetAt: number } | undefined;
  const deletedMessages: FakeDeletedMessage[] = [];

  const users = new Map<string, FakeUser>();
  const streams = new Map<string, FakeStream>();
  const channels = new Map<string, FakeChannel>();
  const tokens = new Map<string, TokenRecord>();
  const refreshIndex = new Map<string, TokenRecord>();
  const codes = new Map<string, { userId: string; scopes: string[]; redirectUri?: string }>();
  const requests: RecordedRequest[] = [];
  const subscriptions: FakeSubscription[] = [];
  const sessions: FakeSession[] = [];
  const frames: WsFrame[] = [];
  const sentNotifications = new Map<string, { sessionId: string; frame: string }>();
  /** reconnect token → session waiting for the client on the new URL */
  const pendingReconnects = new Map<string, { session: FakeSession; resolve: () => void }>();
  const timers = new Set<NodeJS.Timeout>();

  const newToken = (prefix: string) => `${prefix}${randomBytes(15).toString('hex')}`;

  const mintToken = (
    userId: string | undefined,
    scopes: string[],
    expiresInSeconds = tokenLifetime,
    refreshToken?: string,
  ): TokenRecord => {
    const record: TokenRecord = {
      accessToken: newToken('at'),
      refreshToken: userId ? (refreshToken ?? newToken('rt')) : undefined,
      userId,
      scopes,
      expiresAt: Date.now() + expiresInSeconds * 1000,
      valid: true,
    };
    tokens.set(record.accessToken, record);
    if (record.refreshToken) refreshIndex.set(record.refreshToken, record);
    return record;
  };

  const tokenFrom = (request: IncomingMessage): TokenRecord | undefined => {
    const header = String(request.headers.authorization ?? '');
    const match = /^(?:Bearer|OAuth)\s+(.+)$/i.exec(header);
    const record = match ? tokens.get(match[1]!) : undefined;
    return record?.valid && record.expiresAt > Date.now() ? record : undefined;
  };

  // ------------------------------------------------------------------------------------------- HTTP

  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown = raw;
      const contentType = String(request.headers['content-type'] ?? '');
      if (raw && contentType.includes('application/json')) {
        try {
          body = JSON.parse(raw);
        } catch {
          body = raw;
        }
      } else if (raw && contentType.includes('application/x-www-form-urlencoded')) {
        body = Object.fromEntries(new URLSearchParams(raw));
      }
      const record: RecordedRequest = {
        method: request.method ?? 'GET',
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: { ...request.headers },
        body,
        status: 0,
        at: Date.now(),
      };
      requests.push(record);
      const send = (status: number, payload?: unknown, headers: Record<string, string> = {}) => {
        record.status = status;
        const text = payload === undefined ? '' : JSON.stringify(payload);
        response.writeHead(status, { ...(text ? { 'content-type': 'application/json' } : {}), ...headers });
        response.end(text);
      };
      try {
        route(request, url, body, send, response);
      } catch (error) {
        send(500, { error: 'Internal Server Error', status: 500, message: (error as Error).message });
      }
    });
  });

  const helixHeaders = () => ({
    'Ratelimit-Limit': '800',
    'Ratelimit-Remaining': '799',
    'Ratelimit-Reset': String(Math.floor(Date.now() / 1000) + 60),
  });

  const userJson = (user: FakeUser) => ({
    id: user.id,
    login: user.login,
    display_name: user.displayName ?? user.login,
    type: '',
    broadcaster_type: '',
    description: '',
    profile_image_url: user.profileImageUrl ?? '',
    offline_image_url: '',
    view_count: 0,
    created_at: '2020-01-01T00:00:00Z',
  });

  const route = (
    request: IncomingMessage,
    url: URL,
    body: unknown,
    send: (status: number, payload?: unknown, headers?: Record<string, string>) => void,
    _response: ServerResponse,
  ) => {
    const method = request.method ?? 'GET';
    const path = url.pathname;
    const params = {
      ...Object.fromEntries(url.searchParams),
      ...(body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, string>) : {}),
    };

    // ----- OAuth2 (id.twitch.tv/oauth2)
    if (path === '/auth/validate' && method === 'GET') {
      const token = tokenFrom(request);
      if (!token) return send(401, { status: 401, message: 'invalid access token' });
      const user = token.userId ? users.get(token.userId) : undefined;
      return send(200, {
        client_id: clientId,
        ...(token.userId ? { login: user?.login ?? '', user_id: token.userId } : {}),
        scopes: token.scopes,
        expires_in: Math.max(0, Math.floor((token.expiresAt - Date.now()) / 1000)),
      });
    }
    if (path === '/auth/token' && method === 'POST') {
      if (params.client_id !== clientId) return send(400, { status: 400, message: 'invalid client' });
      if (params.client_secret !== clientSecret) return send(403, { status: 403, message: 'invalid client secret' });
      const grant = params.grant_type;
      const tokenResponse = (token: { accessToken: string; refreshToken?: string; scopes: string[] }) => ({
        access_token: token.accessToken,
        refresh_token: token.refreshToken,
        expires_in: tokenLifetime,
        scope: token.scopes,
        token_type: 'bearer',
      });
      if (grant === 'refresh_token') {
        const previous = params.refresh_token ? refreshIndex.get(params.refresh_token) : undefined;
        if (!previous?.refreshToken) return send(400, { status: 400, message: 'Invalid refresh token' });
        previous.valid = false;
        if (rotateRefreshTokens) refreshIndex.delete(previous.refreshToken);
        const next = mintToken(previous.userId, previous.scopes, tokenLifetime, rotateRefreshTokens ? undefined : previous.refreshToken);
        return send(200, tokenResponse(next));
      }
      if (grant === 'authorization_code') {
        const code = params.code ? codes.get(params.code) : undefined;
        if (!code) return send(400, { status: 400, message: 'Invalid authorization code' });
        if (code.redirectUri && code.redirectUri !== params.redirect_uri)
          return send(400, { status: 400, message: 'Parameter redirect_uri does not match registered URI' });
        codes.delete(params.code!);
        const next = mintToken(code.userId, code.scopes);
        return send(200, tokenResponse(next));
      }
      if (grant === 'client_credentials') {
        const next = mintToken(undefined, []);
        return send(200, { access_token: next.accessToken, expires_in: tokenLifetime, token_type: 'bearer' });
      }
      return send(400, { status: 400, message: 'Invalid grant type' });
    }
    if (path === '/auth/revoke' && method === 'POST') {
      const token = params.token ? tokens.get(params.token) : undefined;
      if (token) token.valid = false;
      return send(200);
    }

    // ----- Helix (api.twitch.tv/helix)
    const helixPath = path.startsWith('/mock/') ? path.slice('/mock'.length) : path === '/eventsub/subscriptions' ? path : undefined;
    if (!helixPath) return send(404, { error: 'Not Found', status: 404, message: `no fake route for ${method} ${path}` });
    let headers = helixHeaders();
    if (bucket) {
      const now = Date.now();
      if (now >= bucket.resetAt) Object.assign(bucket, { remaining: bucket.points, resetAt: now + bucket.windowMs });
      const reset = String(Math.ceil(bucket.resetAt / 1000));
      if (bucket.remaining <= 0)
        return send(
          429,
          { error: 'Too Many Requests', status: 429, message: 'Too Many Requests' },
          { 'Ratelimit-Limit': String(bucket.points), 'Ratelimit-Remaining': '0', 'Ratelimit-Reset': reset },
        );
      bucket.remaining -= 1;
      headers = { 'Ratelimit-Limit': String(bucket.points), 'Ratelimit-Remaining': String(bucket.remaining), 'Ratelimit-Reset': reset };
    }
    if (request.headers['client-id'] !== clientId)
      return send(401, { error: 'Unauthorized', status: 401, message: 'Client ID and OAuth token do not match' }, headers);
    const token = tokenFrom(request);
    if (!token) return send(401, { error: 'Unauthorized', status: 401, message: 'Invalid OAuth token' }, headers);

    if (helixPath === '/users' && method === 'GET') {
      const ids = url.searchParams.getAll('id');
      const logins = url.searchParams.getAll('login').map((login) => login.toLowerCase());
      let found: FakeUser[];
      if (ids.length === 0 && logins.length === 0) {
        found = token.userId && users.has(token.userId) ? [users.get(token.userId)!] : [];
      } else {
        found = [...users.values()].filter((user) => ids.includes(user.id) || logins.includes(user.login.toLowerCase()));
      }
      return send(200, { data: found.map(userJson) }, headers);
    }
    if (helixPath === '/streams' && method === 'GET') {
      const ids = url.searchParams.getAll('user_id');
      const logins = url.searchParams.getAll('user_login').map((login) => login.toLowerCase());
      const data = [...streams.entries()]
        .filter(
          ([userId]) =>
            (ids.length === 0 && logins.length === 0) ||
            ids.includes(userId) ||
            logins.includes(users.get(userId)?.login.toLowerCase() ?? ''),
        )
        .map(([userId, stream]) => {
          const user = users.get(userId);
          return {
            id: stream.id ?? '1',
            user_id: userId,
            user_login: user?.login ?? '',
            user_name: user?.displayName ?? user?.login ?? '',
            game_id: stream.gameId ?? '',
            game_name: stream.gameName ?? '',
            type: 'live',
            title: stream.title ?? '',
            tags: [],
            viewer_count: stream.viewerCount ?? 0,
            started_at: stream.startedAt ?? new Date().toISOString(),
            language: stream.language ?? 'en',
            thumbnail_url: '',
            tag_ids: [],
            is_mature: false,
          };
        });
      return send(200, { data, pagination: {} }, headers);
    }
    if (helixPath === '/channels' && method === 'GET') {
      const ids = url.searchParams.getAll('broadcaster_id');
      const data = ids
        .filter((id) => users.has(id))
        .map((id) => {
          const user = users.get(id)!;
          const channel = channels.get(id) ?? {};
          return {
            broadcaster_id: id,
            broadcaster_login: user.login,
            broadcaster_name: user.displayName ?? user.login,
            broadcaster_language: channel.language ?? 'en',
            game_id: channel.gameId ?? '',
            game_name: channel.gameName ?? '',
            title: channel.title ?? '',
            delay: 0,
            tags: [],
            content_classification_labels: [],
            is_branded_content: false,
          };
        });
      return send(200, { data }, headers);
    }
    // Moderation: the token's user must be moderator_id, hold the scope, and moderate the channel.
    const moderation = (scope: string): { broadcaster: string; moderator: string } | undefined => {
      const broadcaster = url.searchParams.get('broadcaster_id') ?? '';
      const moderator = url.searchParams.get('moderator_id') ?? '';
      if (!broadcaster || !moderator)
        return void send(
          400,
          { error: 'Bad Request', status: 400, message: 'Missing required parameter broadcaster_id or moderator_id' },
          headers,
        );
      if (token.userId !== moderator)
        return void send(
          401,
          { error: 'Unauthorized', status: 401, message: 'The ID in moderator_id must match the user ID in the user access token.' },
          headers,
        );
      if (!token.scopes.includes(scope))
        return void send(401, { error: 'Unauthorized', status: 401, message: `Missing scope: ${scope}` }, headers);
      if (moderator !== broadcaster && !moderators.get(broadcaster)?.has(moderator))
        return void send(
          403,
          { error: 'Forbidden', status: 403, message: 'The user in moderator_id is not one of the broadcaster’s moderators.' },
          headers,
        );
      return { broadcaster, moderator };
    };
    const activeBan = (key: string) => {
      const ban = bans.get(key);
      if (ban && ban.endsAt !== null && ban.endsAt <= Date.now()) bans.delete(key);
      return bans.get(key);
    };
    if (helixPath === '/moderation/chat' && method === 'DELETE') {
      const allowed = moderation('moderator:manage:chat_messages');
      if (!allowed) return;
      const messageId = url.searchParams.get('message_id');
      if (messageId)
        deletedMessages.push({ broadcasterId: allowed.broadcaster, messageId, moderatorId: allowed.moderator, at: Date.now() });
      return send(204, undefined, headers);
    }
    if (helixPath === '/moderation/bans' && method === 'POST') {
      const allowed = moderation('moderator:manage:banned_users');
      if (!allowed) return;
      const data = (body as { data?: { user_id?: unknown; duration?: unknown; reason?: unknown } } | undefined)?.data;
      const userId = typeof data?.user_id === 'string' ? data.user_id : '';
      if (!userId) return send(400, { error: 'Bad Request', status: 400, message: 'The user_id field is required.' }, headers);
      const duration = data?.duration === undefined ? undefined : Number(data.duration);
      if (duration !== undefined && (!Number.isInteger(duration) || duration < 1 || duration > 1_209_600))
        return send(400, { error: 'Bad Request', status: 400, message: 'The value in the duration field is not valid.' }, headers);
      if (userId === allowed.broadcaster || moderators.get(allowed.broadcaster)?.has(userId))
        return send(
          400,
          { error: 'Bad Request', status: 400, message: 'The user specified in the user_id field may not be banned.' },
          headers,
        );
      const key = `${allowed.broadcaster}:${userId}`;
      if (activeBan(key)?.endsAt === null)
        return send(
          400,
          { error: 'Bad Request', status: 400, message: 'The user specified in the user_id field is already banned.' },
          headers,
        );
      const now = Date.now();
      const ban: FakeBan = {
        broadcasterId: allowed.broadcaster,
        userId,
        moderatorId: allowed.moderator,
        reason: typeof data?.reason === 'string' ? data.reason : '',
        endsAt: duration === undefined ? null : now + duration * 1000,
        at: now,
      };
      bans.set(key, ban);
      return send(
        200,
        {
          data: [
            {
              broadcaster_id: ban.broadcasterId,
              moderator_id: ban.moderatorId,
              user_id: userId,
              created_at: new Date(now).toISOString(),
              end_time: ban.endsAt === null ? null : new Date(ban.endsAt).toISOString(),
            },
          ],
        },
        headers,
      );
    }
    if (helixPath === '/moderation/bans' && method === 'DELETE') {
      const allowed = moderation('moderator:manage:banned_users');
      if (!allowed) return;
      const key = `${allowed.broadcaster}:${url.searchParams.get('user_id') ?? ''}`;
      if (!activeBan(key))
        return send(400, { error: 'Bad Request', status: 400, message: 'The user specified in the user_id field is not banned.' }, headers);
      bans.delete(key);
      return send(204, undefined, headers);
    }
    if (helixPath === '/moderation/moderators' && method === 'GET') {
      const broadcaster = url.searchParams.get('broadcaster_id') ?? '';
      if (token.userId !== broadcaster)
        return send(
          401,
          {
            error: 'Unauthorized',
            status: 401,
            message: 'The ID in broadcaster_id must match the user ID found in the request’s OAuth token.',
          },
          headers,
        );
      const data = [...(moderators.get(broadcaster) ?? [])].map((id) => ({
        user_id: id,
        user_login: users.get(id)?.login ?? '',
        user_name: users.get(id)?.displayName ?? users.get(id)?.login ?? '',
      }));
      return send(200, { data, pagination: {} }, headers);
    }
    if (helixPath === '/chat/shoutouts' && method === 'POST') {
      const from = url.searchParams.get('from_broadcaster_id') ?? '';
      const to = url.searchParams.get('to_broadcaster_id') ?? '';
      const moderator = url.searchParams.get('moderator_id') ?? '';
      if (!from || !to || !moderator)
        return send(400, { error: 'Bad Request', status: 400, message: 'Missing required parameter' }, headers);
      if (token.userId !== moderator)
        return send(
          401,
          { error: 'Unauthorized', status: 401, message: 'The ID in moderator_id must match the user ID in the user access token.' },
          headers,
        );
      if (!token.scopes.includes('moderator:manage:shoutouts'))
        return send(401, { error: 'Unauthorized', status: 401, message: 'Missing scope: moderator:manage:shoutouts' }, headers);
      if (moderator !== from && !moderators.get(from)?.has(moderator))
        return send(
          403,
          { error: 'Forbidden', status: 403, message: 'The user in moderator_id is not one of the broadcaster’s moderators.' },
          headers,
        );
      if (from === to)
        return send(400, { error: 'Bad Request', status: 400, message: 'The broadcaster may not give themselves a Shoutout.' }, headers);
      if (!streams.has(from))
        return send(400, { error: 'Bad Request', status: 400, message: 'The broadcaster is not streaming live.' }, headers);
      const now = Date.now();
      // Twitch: one shoutout every 2 minutes, and the same channel once every 60 minutes.
      if (shoutouts.some((shout) => shout.fromBroadcasterId === from && now - shout.at < 120_000))
        return send(
          429,
          {
            error: 'Too Many Requests',
            status: 429,
            message: 'The broadcaster may not send a Shoutout within 2 minutes of the previous one.',
          },
          headers,
        );
      if (shoutouts.some((shout) => shout.fromBroadcasterId === from && shout.toBroadcasterId === to && now - shout.at < 3_600_000))
        return send(
          429,
          { error: 'Too Many Requests', status: 429, message: 'The broadcaster may not Shoutout the same channel within 60 minutes.' },
          headers,
        );
      shoutouts.push({ fromBroadcasterId: from, toBroadcasterId: to, moderatorId: moderator, at: now });
      return send(204, undefined, headers);
    }
    if (helixPath === '/eventsub/subscriptions') {
      const userCost = (userId: string | undefined) =>
        subscriptions.filter((sub) => sub.status === 'enabled' && sessionOwner(sub) === userId).reduce((sum, sub) => sum + sub.cost, 0);
      const summary = (list: FakeSubscription[]) => ({
        data: list,
        total: list.length,
        total_cost: userCost(token.userId),
        max_total_cost: maxTotalCost,
        pagination: {},
      });
      if (method === 'GET') {
        const status = url.searchParams.get('status');
        const type = url.searchParams.get('type');
        const list = subscriptions.filter(
          (sub) => sub.status !== 'deleted' && (!status || sub.status === status) && (!type || sub.type === type),
        );
        return send(200, summary(list), headers);
      }
      if (method === 'DELETE') {
        const sub = subscriptions.find((candidate) => candidate.id === url.searchParams.get('id') && candidate.status !== 'deleted');
        if (!sub) return send(404, { error: 'Not Found', status: 404, message: 'subscription not found' }, headers);
        sub.status = 'deleted';
        return send(204, undefined, headers);
      }
      if (method === 'POST') {
        const input = (body ?? {}) as {
          type?: string;
          version?: string;
          condition?: Record<string, string>;
          transport?: { method?: string; session_id?: string };
        };
        if (!input.type || !input.version || !input.condition || input.transport?.method !== 'websocket' || !input.transport.session_id) {
          return send(
            400,
            {
              error: 'Bad Request',
              status: 400,
              message: 'type, version, condition and a websocket transport with session_id are required',
            },
            headers,
          );
        }
        const session = sessions.find((candidate) => candidate.id === input.transport!.session_id);
        if (!session || session.status === 'disconnected') {
          return send(
            400,
            { error: 'Bad Request', status: 400, message: 'websocket transport session does not exist or has already disconnected' },
            headers,
          );
        }
        if (!token.userId)
          return send(
            400,
            { error: 'Bad Request', status: 400, message: 'websocket transport cannot be used with an app access token' },
            headers,
          );
        for (const scopeSet of REQUIRED_SCOPES[input.type] ?? []) {
          if (!scopeSet.some((scope) => token.scopes.includes(scope))) {
            return send(
              403,
              {
                error: 'Forbidden',
                status: 403,
                message: `subscription missing proper authorization (needs one of ${scopeSet.join(', ')})`,
              },
              headers,
            );
          }
        }
        // Types that need a scope need the channel's own authorization: the broadcaster's token, or for
        // channel.follow a moderator's token naming that moderator in the condition.
        const channelId =
          input.condition.broadcaster_user_id ?? input.condition.to_broadcaster_user_id ?? input.condition.from_broadcaster_user_id;
        const needsAuthorization = REQUIRED_SCOPES[input.type] !== undefined;
        if (input.type === 'channel.follow') {
          const moderator = input.condition.moderator_user_id;
          if (moderator !== token.userId || (moderator !== channelId && !moderators.get(channelId ?? '')?.has(moderator))) {
            return send(403, { error: 'Forbidden', status: 403, message: 'subscription missing proper authorization' }, headers);
          }
        } else if (needsAuthorization && channelId !== token.userId) {
          return send(403, { error: 'Forbidden', status: 403, message: 'subscription missing proper authorization' }, headers);
        }
        if (session.userId && session.userId !== token.userId) {
          return send(
            400,
            { error: 'Bad Request', status: 400, message: 'websocket transport session belongs to a different user' },
            headers,
          );
        }
        if (!session.userId) {
          const connected = openSessions().filter((candidate) => candidate.userId === token.userId).length;
          if (connected >= maxConnectionsPerUser)
            return send(
              429,
              { error: 'Too Many Requests', status: 429, message: 'number of websocket transports limit exceeded' },
              headers,
            );
        }
        if (
          subscriptions.filter((sub) => sub.status === 'enabled' && sub.transport.session_id === session.id).length >=
          maxSubscriptionsPerConnection
        ) {
          return send(
            429,
            { error: 'Too Many Requests', status: 429, message: 'number of subscriptions per websocket transport limit exceeded' },
            headers,
          );
        }
        // Cost 0 when the channel authorized the app (its own token, or a type that needs authorization); 1 otherwise.
        const cost = needsAuthorization || channelId === token.userId ? 0 : 1;
        if (userCost(token.userId) + cost > maxTotalCost) {
          return send(
            429,
            {
              error: 'Too Many Requests',
              status: 429,
              message: `subscription would exceed max_total_cost (${maxTotalCost})`,
              total_cost: userCost(token.userId),
              max_total_cost: maxTotalCost,
            },
            headers,
          );
        }
        const conditionKey = JSON.stringify(Object.entries(input.condition).sort());
        const duplicate = subscriptions.find(
          (sub) =>
            sub.status === 'enabled' &&
            sub.type === input.type &&
            sub.version === input.version &&
            sub.transport.session_id === session.id &&
            JSON.stringify(Object.entries(sub.condition).sort()) === conditionKey,
        );
        if (duplicate) return send(409, { error: 'Conflict', status: 409, message: 'subscription already exists' }, headers);
        const sub: FakeSubscription = {
          id: randomUUID(),
          status: 'enabled',
          type: input.type,
          version: input.version,
          condition: input.condition,
          created_at: new Date().toISOString(),
          transport: { method: 'websocket', session_id: session.id, connected_at: session.connectedAt },
          cost,
        };
        session.userId = token.userId;
        subscriptions.push(sub);
        return send(202, summary([sub]), headers);
      }
    }
    return send(404, { error: 'Not Found', status: 404, message: `no fake Helix route for ${method} ${helixPath}` }, headers);
  };

  // ------------------------------------------------------------------------------ EventSub WebSocket

  const wss = new WebSocketServer({ noServer: true });

  const openSessions = () => sessions.filter((session) => session.status !== 'disconnected');
  const sessionOwner = (sub: FakeSubscription) => sessions.find((session) => session.id === sub.transport.session_id)?.userId;

  const liveSocket = (session: FakeSession) => [...session.sockets].reverse().find((socket) => socket.readyState === WebSocket.OPEN);

  const sendFrame = (session: FakeSession, frame: object, socket = liveSocket(session)) => {
    if (!socket) throw new Error(`session ${session.id} has no open socket`);
    const text = JSON.stringify(frame);
    socket.send(text);
    frames.push({ direction: 'out', sessionId: session.id, data: frame, at: Date.now() });
    return text;
  };

  const metadata = (type: string, extra: Record<string, string> = {}) => ({
    message_id: randomUUID(),
    message_type: type,
    message_timestamp: new Date().toISOString(),
    ...extra,
  });

  const sessionJson = (session: FakeSession, reconnectUrl: string | null = null) => ({
    id: session.id,
    status: reconnectUrl ? 'reconnecting' : 'connected',
    connected_at: session.connectedAt,
    keepalive_timeout_seconds: reconnectUrl ? null : keepaliveTimeoutSeconds,
    reconnect_url: reconnectUrl,
  });

  const scheduleKeepalives = (session: FakeSession) => {
    if (session.timer) clearInterval(session.timer);
    session.timer = setInterval(() => {
      if (session.keepalivesStopped || session.status === 'disconnected') return;
      const socket = liveSocket(session);
      if (socket) sendFrame(session, { metadata: metadata('session_keepalive'), payload: {} }, socket);
    }, keepaliveIntervalMs);
    timers.add(session.timer);
  };

  const disconnectSession = (session: FakeSession) => {
    session.status = 'disconnected';
    if (session.timer) clearInterval(session.timer);
    const at = new Date().toISOString();
    for (const sub of subscriptions) {
      if (sub.transport.session_id === session.id && sub.status === 'enabled') {
        sub.status = 'websocket_disconnected';
        sub.transport.disconnected_at = at;
      }
    }
  };

  const attachSocket = (session: FakeSession, socket: WebSocket, handover: boolean) => {
    session.sockets.push(socket);
    socket.on('message', (data) => {
      let parsed: unknown = String(data);
      try {
        parsed = JSON.parse(String(data));
      } catch {
        // keep the raw text
      }
      frames.push({ direction: 'in', sessionId: session.id, data: parsed, at: Date.now() });
      // Twitch closes the connection when a client sends anything (4001).
      socket.close(4001, 'client sent inbound traffic');
    });
    socket.on('close', (code) => {
      const closedByServer = (socket as unknown as { __closedByServer?: boolean }).__closedByServer === true;
      const otherOpen = session.sockets.some((other) => other !== socket && other.readyState === WebSocket.OPEN);
      session.closes.push({ by: closedByServer ? 'server' : 'client', code, handover: otherOpen });
      if (!otherOpen && session.status !== 'disconnected') disconnectSession(session);
    });
    sendFrame(session, { metadata: metadata('session_welcome'), payload: { session: sessionJson(session) } }, socket);
    if (handover) session.status = 'connected';
  };

  server.on('upgrade', (request, socket, head) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== '/ws') {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      const reconnectToken = url.searchParams.get('reconnect');
      if (reconnectToken) {
        const pending = pendingReconnects.get(reconnectToken);
        if (!pending || pending.session.status === 'disconnected') {
          ws.close(4007, 'invalid reconnect');
          return;
        }
        pendingReconnects.delete(reconnectToken);
        const { session } = pending;
        const previous = session.sockets.filter((candidate) => candidate.readyState === WebSocket.OPEN);
        attachSocket(session, ws, true);
        pending.resolve();
        // Twitch drops the old connection once the client is on the new one.
        const timer = setTimeout(() => {
          for (const old of previous) {
            if (old.readyState === WebSocket.OPEN) {
              (old as unknown as { __closedByServer?: boolean }).__closedByServer = true;
              old.close(4004, 'reconnect grace time expired');
            }
          }
        }, reconnectGraceMs);
        timers.add(timer);
        return;
      }
      const session: FakeSession = {
        id: `fake_session_${randomBytes(8).toString('hex')}`,
        status: 'connected',
        connectedAt: new Date().toISOString(),
        sockets: [],
        keepalivesStopped: false,
        closes: [],
      };
      sessions.push(session);
      attachSocket(session, ws, false);
      scheduleKeepalives(session);
    });
  });

  // Twurple reaches the fake as `localhost:<port>`, which may resolve to ::1: the fake answers on both
  // loopbacks with the same port. When ::1 already has that port (another test process's server), the pair
  // is given up and tried again on a new port; a client reaching someone else's server would hang.
  const server6 = createServer((request, response) => server.emit('request', request, response));
  server6.on('upgrade', (request, socket, head) => server.emit('upgrade', request, socket, head));
  let port = 0;
  for (let attempt = 1; ; attempt += 1) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    port = (server.address() as AddressInfo).port;
    const bound = await new Promise<'ok' | 'taken' | 'no-ipv6'>((resolve) => {
      server6.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRINUSE' ? 'taken' : 'no-ipv6'));
      server6.listen(port, '::1', () => resolve('ok'));
    });
    if (bound !== 'taken') break;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (attempt >= 20) throw new Error('fake twitch: found no port free on both 127.0.0.1 and ::1');
  }

  const fake: FakeTwitch = {
    port,
    url: `http://localhost:${port}`,
    clientId,
    clientSecret,
    requests,
    subscriptions,
    sessions,
    frames,
    shoutouts,
    bans,
    deletedMessages,

    addUser(user) {
      users.set(user.id, user);
    },
    setStream(userId, stream) {
      if (stream) streams.set(userId, stream);
      else streams.delete(userId);
    },
    setChannel(userId, channel) {
      channels.set(userId, channel);
    },
    limitHelix(limit) {
      bucket = limit ? { ...limit, remaining: limit.points, resetAt: Date.now() + limit.windowMs } : undefined;
    },
    addModerator(broadcasterId, userId) {
      const set = moderators.get(broadcasterId) ?? new Set<string>();
      set.add(userId);
      moderators.set(broadcasterId, set);
    },
    issueToken(userId, tokenOptions = {}) {
      const record = mintToken(userId, tokenOptions.scopes ?? [], tokenOptions.expiresInSeconds);
      return { accessToken: record.accessToken, refreshToken: record.refreshToken! };
    },
    createAuthorizationCode(userId, codeOptions = {}) {
      const code = createHash('sha256').update(randomBytes(16)).digest('hex').slice(0, 30);
      codes.set(code, { userId, scopes: codeOptions.scopes ?? [], redirectUri: codeOptions.redirectUri });
      return code;
    },
    invalidateAccessToken(accessToken) {
      const record = tokens.get(accessToken);
      if (record) record.valid = false;
    },
    invalidateRefreshToken(refreshToken) {
      refreshIndex.delete(refreshToken);
    },

    activeSubscriptions(type) {
      return subscriptions.filter((sub) => sub.status === 'enabled' && (!type || sub.type === type));
    },
    currentSession() {
      return [...openSessions()].reverse()[0];
    },
    notify(type, version, event, notifyOptions = {}) {
      // Like Twitch, only subscriptions whose condition the event matches (e.g. its broadcaster) get it.
      const targets = fake
        .activeSubscriptions(type)
        .filter(
          (sub) =>
            (!version || sub.version === version) &&
            Object.entries(sub.condition).every(
              ([key, value]) => event[key] === undefined || event[key] === null || String(event[key]) === value,
            ),
        );
      if (targets.length === 0) throw new Error(`no enabled subscription of type ${type}${version ? ` v${version}` : ''}`);
      const ids: string[] = [];
      for (const sub of targets) {
        const session = sessions.find((candidate) => candidate.id === sub.transport.session_id)!;
        const messageId = targets.length === 1 && notifyOptions.messageId ? notifyOptions.messageId : randomUUID();
        const frame = {
          metadata: {
            message_id: messageId,
            message_type: 'notification',
            message_timestamp: notifyOptions.timestamp ?? new Date().toISOString(),
            subscription_type: sub.type,
            subscription_version: sub.version,
          },
          payload: { subscription: sub, event },
        };
        const text = sendFrame(session, frame);
        sentNotifications.set(messageId, { sessionId: session.id, frame: text });
        ids.push(messageId);
      }
      return ids;
    },
    sendDuplicate(messageId) {
      const sent = sentNotifications.get(messageId);
      if (!sent) throw new Error(`no notification ${messageId} was sent`);
      const session = sessions.find((candidate) => candidate.id === sent.sessionId)!;
      // A redelivery may arrive on a later session (after a restart); send it where the type is subscribed now.
      const target = session.status !== 'disconnected' ? session : fake.currentSession();
      if (!target) throw new Error('no connected session to redeliver on');
      const frame = JSON.parse(sent.frame) as { payload: { subscription: FakeSubscription } };
      if (target !== session) {
        const sub = fake
          .activeSubscriptions(frame.payload.subscription.type)
          .find((candidate) => candidate.transport.session_id === target.id);
        if (sub) frame.payload.subscription = sub;
      }
      sendFrame(target, frame);
    },
    async sendReconnect(reconnectOptions = {}) {
      const waits: Array<Promise<void>> = [];
      for (const session of openSessions()) {
        const token = randomBytes(8).toString('hex');
        session.status = 'reconnecting';
        waits.push(new Promise<void>((resolve) => pendingReconnects.set(token, { session, resolve })));
        const reconnectUrl = `ws://127.0.0.1:${port}/ws?reconnect=${token}`;
        sendFrame(session, { metadata: metadata('session_reconnect'), payload: { session: sessionJson(session, reconnectUrl) } });
      }
      const timeoutMs = reconnectOptions.timeoutMs ?? 10_000;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(waits),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('client did not follow session_reconnect')), timeoutMs);
        }),
      ]).finally(() => clearTimeout(timer));
    },
    stopKeepalives() {
      for (const session of openSessions()) session.keepalivesStopped = true;
    },
    revoke(type, status = 'authorization_revoked') {
      for (const sub of fake.activeSubscriptions(type)) {
        sub.status = status;
        const session = sessions.find((candidate) => candidate.id === sub.transport.session_id)!;
        sendFrame(session, {
          metadata: metadata('revocation', { subscription_type: sub.type, subscription_version: sub.version }),
          payload: { subscription: sub },
        });
      }
    },
    dropConnections(code = 4000) {
      for (const session of openSessions()) {
        for (const socket of session.sockets) {
          if (socket.readyState === WebSocket.OPEN) {
            (socket as unknown as { __closedByServer?: boolean }).__closedByServer = true;
            socket.close(code, 'internal server error');
          }
        }
      }
    },
    async waitFor(predicate, timeoutMs = 10_000, what = 'condition') {
      const started = Date.now();
      for (;;) {
        const value = predicate();
        if (value) return value as never;
        if (Date.now() - started > timeoutMs) {
          // What the fake saw last says where a client stopped (useful when a test times out).
          const last = requests.slice(-8).map((request) => `${request.method} ${request.path} → ${request.status}`);
          throw new Error(
            `fake twitch: timed out after ${timeoutMs} ms waiting for ${what}; last requests: ${last.join(', ') || 'none'}; sessions: ${sessions.length}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async stop() {
      for (const timer of timers) {
        clearTimeout(timer);
        clearInterval(timer);
      }
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      server6.closeAllConnections?.();
      await Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        new Promise<void>((resolve) => (server6.listening ? server6.close(() => resolve()) : resolve())),
      ]);
    },
  };
  return fake;
}

/** Points Twurple at the fake (process-wide); returns a function restoring the previous value. */
export function useFakeTwitch(fake: Pick<FakeTwitch, 'port'>): () => void {
  const previous = process.env.TWURPLE_MOCK_API_PORT;
  process.env.TWURPLE_MOCK_API_PORT = String(fake.port);
  return () => {
    if (previous === undefined) delete process.env.TWURPLE_MOCK_API_PORT;
    else process.env.TWURPLE_MOCK_API_PORT = previous;
  };
}
