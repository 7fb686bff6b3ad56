/**
 * A fake Discord: the REST API under `/api/v10` and a gateway WebSocket, speaking the real wire
 * protocol so the real discord.js client is what tests exercise.
 *
 * REST: `GET /gateway/bot`, `GET /users/@me`, channel, guild, role and member lookups, and
 * `POST`/`PATCH` of channel messages (with `message_reference`, `allowed_mentions` and
 * `nonce`/`enforce_nonce`), each answered with Discord's rate-limit headers. `force429` makes the next
 * message create answer 429 with `retry_after`. Every REST call is recorded.
 *
 * Gateway: Hello (op 10) → Identify (op 2) → READY (guilds unavailable) → GUILD_CREATE with channels,
 * roles and members; heartbeats (op 1) are ACKed (op 11). Intents are checked: with `messageContent:
 * 'refuse'` an Identify asking for MessageContent is closed with 4014, with `'not-granted'` the
 * application flags lack the intent and message content arrives empty (unless the bot is mentioned),
 * as Discord does.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { listenLoopback, readBody, sendJson } from './http.js';

/** Gateway intent bits the fake looks at. */
export const FakeIntent = { Guilds: 1 << 0, GuildMessages: 1 << 9, MessageContent: 1 << 15 } as const;
/** Application flags that say the MessageContent intent is enabled in the Developer Portal. */
const GATEWAY_MESSAGE_CONTENT = (1 << 19) | (1 << 18);

export interface FakeRole {
  id: string;
  name: string;
  /** Permission bit set as Discord sends it (a decimal string). */
  permissions?: string;
}

export interface FakeMember {
  id: string;
  username: string;
  roles?: string[];
  bot?: boolean;
}

export interface FakeDiscordOptions {
  token: string;
  botId?: string;
  botName?: string;
  guildId?: string;
  guildName?: string;
  ownerId?: string;
  /** Text channels (type 0). Default one `general`. */
  channels?: Array<{ id: string; name: string }>;
  /** Roles besides @everyone (whose id is the guild id). */
  roles?: FakeRole[];
  members?: FakeMember[];
  /** How the MessageContent intent is configured in the "Developer Portal". Default `granted`. */
  messageContent?: 'granted' | 'not-granted' | 'refuse';
  heartbeatIntervalMs?: number;
}

export interface RecordedCall {
  method: string;
  /** Path below `/api/v10`, e.g. `/channels/1/messages`. */
  path: string;
  status: number;
  body?: any;
  at: number;
}

export interface FakeMessage {
  id: string;
  channel_id: string;
  content: string;
  author: { id: string; username: string };
  message_reference?: { message_id: string };
  allowed_mentions?: unknown;
  nonce?: string;
  edited?: boolean;
}

export interface FakeDiscord {
  /** The REST base to hand discord.js as its `api` option (`http://127.0.0.1:port/api`). */
  readonly apiUrl: string;
  readonly gatewayUrl: string;
  readonly calls: RecordedCall[];
  /** Messages the bot created (in order), by id. */
  readonly posted: FakeMessage[];
  /** Identify payloads received. */
  readonly identifies: Array<{ intents: number; token: string }>;
  /** Sends MESSAGE_CREATE to every identified connection; returns the message id. */
  sendMessage(input: { channelId?: string; author: FakeMember; content: string; mentionsBot?: boolean }): string;
  /** The next `count` message creates answer 429 with this retry-after. */
  force429(retryAfterMs: number, count?: number): void;
  /** Changes the MessageContent setting, as a toggle in the Developer Portal does (for new sessions). */
  setMessageContent(mode: NonNullable<FakeDiscordOptions['messageContent']>): void;
  /** Closes every gateway connection with `code` (4000: an unknown error, after which clients reconnect). */
  dropConnections(code?: number): void;
  /** Open, identified gateway connections. */
  connections(): number;
  stop(): Promise<void>;
}

const EPOCH = 1_420_070_400_000n;
let counter = 0n;
function snowflake(): string {
  counter += 1n;
  return (((BigInt(Date.now()) - EPOCH) << 22n) | (counter & 0xfffn)).toString();
}

/** Starts a fake Discord on a free loopback port. */
export async function startFakeDiscord(options: FakeDiscordOptions): Promise<FakeDiscord> {
  const botId = options.botId ?? '900000000000000001';
  const bot = { id: botId, username: options.botName ?? 'bitbrat', discriminator: '0', global_name: null, avatar: null, bot: true };
  const guildId = options.guildId ?? '800000000000000001';
  const channels = options.channels ?? [{ id: '700000000000000001', name: 'general' }];
  const roles = [
    { id: guildId, name: '@everyone', permissions: String((1n << 10n) | (1n << 11n) | (1n << 16n)) },
    ...(options.roles ?? []),
  ];
  const members: FakeMember[] = [{ id: botId, username: bot.username, bot: true }, ...(options.members ?? [])];
  let messageContent = options.messageContent ?? 'granted';
  const calls: RecordedCall[] = [];
  const posted: FakeMessage[] = [];
  const identifies: Array<{ intents: number; token: string }> = [];
  const sockets = new Map<WebSocket, { seq: number; intents: number }>();
  let pending429: { retryAfterMs: number; count: number } | undefined;
  const buckets = new Map<string, { remaining: number; resetAt: number }>();

  const userOf = (member: FakeMember) => ({
    id: member.id,
    username: member.username,
    discriminator: '0',
    global_name: null,
    avatar: null,
    ...(member.bot ? { bot: true } : {}),
  });
  const memberOf = (member: FakeMember) => ({
    user: userOf(member),
    roles: member.roles ?? [],
    joined_at: new Date(0).toISOString(),
    deaf: false,
    mute: false,
    flags: 0,
    nick: null,
  });
  const roleOf = (role: FakeRole, position: number) => ({
    id: role.id,
    name: role.name,
    permissions: role.permissions ?? '0',
    position,
    color: 0,
    hoist: false,
    managed: false,
    mentionable: false,
    flags: 0,
  });
  const channelOf = (channel: { id: string; name: string }, position: number) => ({
    id: channel.id,
    type: 0,
    name: channel.name,
    position,
    guild_id: guildId,
    permission_overwrites: [],
    nsfw: false,
    topic: null,
    last_message_id: null,
    parent_id: null,
    rate_limit_per_user: 0,
  });
  const guild = () => ({
    id: guildId,
    name: options.guildName ?? 'BitBrat HQ',
    icon: null,
    owner_id: options.ownerId ?? '600000000000000099',
    roles: roles.map(roleOf),
    channels: channels.map(channelOf),
    members: members.map(memberOf),
    member_count: members.length,
    unavailable: false,
    large: false,
    joined_at: new Date(0).toISOString(),
    features: [],
    emojis: [],
    stickers: [],
    threads: [],
    presences: [],
    voice_states: [],
    stage_instances: [],
    guild_scheduled_events: [],
    premium_tier: 0,
    verification_level: 0,
    default_message_notifications: 0,
    explicit_content_filter: 0,
    mfa_level: 0,
    nsfw_level: 0,
    system_channel_flags: 0,
    preferred_locale: 'en-US',
    afk_timeout: 300,
  });

  const server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => sendJson(res, 500, { message: String(error), code: 0 }));
  });

  const rateHeaders = (bucket: string): Record<string, string> => {
    const now = Date.now();
    let state = buckets.get(bucket);
    if (!state || state.resetAt <= now) state = { remaining: 50, resetAt: now + 5_000 };
    state.remaining = Math.max(0, state.remaining - 1);
    buckets.set(bucket, state);
    return {
      'x-ratelimit-limit': '50',
      'x-ratelimit-remaining': String(state.remaining),
      'x-ratelimit-reset': String(state.resetAt / 1000),
      'x-ratelimit-reset-after': String((state.resetAt - now) / 1000),
      'x-ratelimit-bucket': bucket,
    };
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const raw = await readBody(req);
    let body: any;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = raw;
    }
    const path = url.pathname.replace(/^\/api\/v10/, '');
    const reply = (status: number, value: unknown, bucket = path.split('/').slice(0, 3).join('/'), extra: Record<string, string> = {}) => {
      calls.push({ method, path, status, body, at: Date.now() });
      sendJson(res, status, value, { ...rateHeaders(bucket), ...extra });
    };
    if (!url.pathname.startsWith('/api/v10/')) return reply(404, { message: '404: Not Found', code: 0 });
    if (req.headers.authorization !== `Bot ${options.token}`) return reply(401, { message: '401: Unauthorized', code: 0 });

    let match: RegExpMatchArray | null;
    if (method === 'GET' && path === '/gateway/bot') {
      return reply(200, {
        url: `ws://127.0.0.1:${port}/gateway`,
        shards: 1,
        session_start_limit: { total: 1000, remaining: 999, reset_after: 86_400_000, max_concurrency: 1 },
      });
    }
    if (method === 'GET' && path === '/users/@me') return reply(200, bot);
    if (method === 'GET' && (match = path.match(/^\/guilds\/(\d+)$/)))
      return match[1] === guildId ? reply(200, guild()) : reply(404, { message: 'Unknown Guild', code: 10004 });
    if (method === 'GET' && path === `/guilds/${guildId}/roles`) return reply(200, roles.map(roleOf));
    if (method === 'GET' && path === `/guilds/${guildId}/channels`) return reply(200, channels.map(channelOf));
    if (method === 'GET' && (match = path.match(/^\/guilds\/\d+\/members\/(\d+)$/))) {
      const member = members.find((candidate) => candidate.id === match![1]);
      return member ? reply(200, memberOf(member)) : reply(404, { message: 'Unknown Member', code: 10007 });
    }
    if (method === 'GET' && (match = path.match(/^\/channels\/(\d+)$/))) {
      const index = channels.findIndex((candidate) => candidate.id === match![1]);
      return index >= 0 ? reply(200, channelOf(channels[index]!, index)) : reply(404, { message: 'Unknown Channel', code: 10003 });
    }
    if ((match = path.match(/^\/channels\/(\d+)\/messages(?:\/(\d+))?$/))) {
      const channelId = match[1]!;
      const bucket = `messages:${channelId}`;
      if (!channels.some((candidate) => candidate.id === channelId)) return reply(404, { message: 'Unknown Channel', code: 10003 }, bucket);
      if (method === 'POST' && !match[2]) {
        if (pending429 && pending429.count > 0) {
          pending429.count -= 1;
          const seconds = pending429.retryAfterMs / 1000;
          return reply(429, { message: 'You are being rate limited.', retry_after: seconds, global: false }, bucket, {
            'retry-after': String(Math.ceil(seconds)),
            'x-ratelimit-remaining': '0',
            'x-ratelimit-reset-after': String(seconds),
            'x-ratelimit-reset': String((Date.now() + pending429.retryAfterMs) / 1000),
            'x-ratelimit-scope': 'user',
          });
        }
        const content = typeof body?.content === 'string' ? body.content : '';
        if (!content) return reply(400, { message: 'Cannot send an empty message', code: 50006 }, bucket);
        if (content.length > 2000)
          return reply(
            400,
            {
              message: 'Invalid Form Body',
              code: 50035,
              errors: { content: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 2000 or fewer in length.' }] } },
            },
            bucket,
          );
        if (body.enforce_nonce && body.nonce !== undefined) {
          const existing = posted.find((message) => message.channel_id === channelId && message.nonce === String(body.nonce));
          if (existing) return reply(200, wire(existing), bucket);
        }
        const message: FakeMessage = {
          id: snowflake(),
          channel_id: channelId,
          content,
          author: { id: bot.id, username: bot.username },
          ...(body.message_reference ? { message_reference: body.message_reference } : {}),
          ...(body.allowed_mentions ? { allowed_mentions: body.allowed_mentions } : {}),
          ...(body.nonce !== undefined ? { nonce: String(body.nonce) } : {}),
        };
        posted.push(message);
        return reply(200, wire(message), bucket);
      }
      if (method === 'PATCH' && match[2]) {
        const message = posted.find((candidate) => candidate.id === match![2] && candidate.channel_id === channelId);
        if (!message) return reply(404, { message: 'Unknown Message', code: 10008 }, bucket);
        if (typeof body?.content === 'string') message.content = body.content;
        message.edited = true;
        return reply(200, wire(message), bucket);
      }
    }
    return reply(404, { message: '404: Not Found', code: 0 });
  }

  const wire = (message: FakeMessage) => ({
    id: message.id,
    channel_id: message.channel_id,
    guild_id: guildId,
    author: userOf({ ...message.author, bot: true }),
    content: message.content,
    timestamp: new Date().toISOString(),
    edited_timestamp: message.edited ? new Date().toISOString() : null,
    tts: false,
    mention_everyone: false,
    mentions: [],
    mention_roles: [],
    attachments: [],
    embeds: [],
    pinned: false,
    type: message.message_reference ? 19 : 0,
    flags: 0,
    ...(message.message_reference ? { message_reference: message.message_reference } : {}),
    ...(message.nonce ? { nonce: message.nonce } : {}),
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (!(req.url ?? '').startsWith('/gateway')) return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws));
  });
  const dispatch = (ws: WebSocket, t: string, d: unknown) => {
    const state = sockets.get(ws);
    if (!state || ws.readyState !== WebSocket.OPEN) return;
    state.seq += 1;
    ws.send(JSON.stringify({ op: 0, t, s: state.seq, d }));
  };
  wss.on('connection', (ws) => {
    ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: options.heartbeatIntervalMs ?? 1_000 }, s: null, t: null }));
    ws.on('message', (data) => {
      let payload: { op: number; d: any };
      try {
        payload = JSON.parse(String(data));
      } catch {
        ws.close(4002, 'Error while decoding payload.');
        return;
      }
      if (payload.op === 1) {
        ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null }));
      } else if (payload.op === 2) {
        const intents = Number(payload.d?.intents ?? 0);
        identifies.push({ intents, token: String(payload.d?.token ?? '') });
        if (payload.d?.token !== options.token) return ws.close(4004, 'Authentication failed.');
        if (messageContent === 'refuse' && intents & FakeIntent.MessageContent) return ws.close(4014, 'Disallowed intent(s).');
        sockets.set(ws, { seq: 0, intents });
        dispatch(ws, 'READY', {
          v: 10,
          user: bot,
          guilds: [{ id: guildId, unavailable: true }],
          session_id: `session-${snowflake()}`,
          resume_gateway_url: `ws://127.0.0.1:${port}/gateway`,
          shard: [0, 1],
          application: { id: botId, flags: messageContent === 'granted' ? GATEWAY_MESSAGE_CONTENT : 0 },
          private_channels: [],
          relationships: [],
          user_settings: {},
        });
        if (intents & FakeIntent.Guilds) dispatch(ws, 'GUILD_CREATE', guild());
      } else if (payload.op === 6) {
        // Sessions are not kept: tell the client to identify again.
        ws.send(JSON.stringify({ op: 9, d: false, s: null, t: null }));
      }
    });
    ws.on('close', () => sockets.delete(ws));
  });

  const listening = await listenLoopback(server);
  const port = listening.port;

  return {
    apiUrl: `http://127.0.0.1:${port}/api`,
    gatewayUrl: `ws://127.0.0.1:${port}/gateway`,
    calls,
    posted,
    identifies,
    sendMessage(input) {
      const id = snowflake();
      const channelId = input.channelId ?? channels[0]!.id;
      for (const [ws, state] of sockets) {
        if (!(state.intents & FakeIntent.GuildMessages)) continue;
        const readable = messageContent === 'granted' && state.intents & FakeIntent.MessageContent;
        dispatch(ws, 'MESSAGE_CREATE', {
          id,
          channel_id: channelId,
          guild_id: guildId,
          author: userOf(input.author),
          member: { roles: input.author.roles ?? [], joined_at: new Date(0).toISOString(), deaf: false, mute: false, flags: 0, nick: null },
          content: readable || input.mentionsBot ? input.content : '',
          timestamp: new Date().toISOString(),
          edited_timestamp: null,
          tts: false,
          mention_everyone: false,
          mentions: input.mentionsBot ? [userOf({ id: bot.id, username: bot.username, bot: true })] : [],
          mention_roles: [],
          attachments: [],
          embeds: [],
          pinned: false,
          type: 0,
          flags: 0,
        });
      }
      return id;
    },
    force429(retryAfterMs, count = 1) {
      pending429 = { retryAfterMs, count };
    },
    setMessageContent(mode) {
      messageContent = mode;
    },
    dropConnections(code = 4000) {
      for (const ws of sockets.keys()) ws.close(code, 'Unknown error.');
    },
    connections: () => sockets.size,
    async stop() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      await listening.stop();
    },
  };
}
