/**
 * The Discord connection: the only module that imports discord.js, and only when a token is
 * configured (a dynamic import, so a process without Discord never loads it). It owns the gateway
 * connection, turns MESSAGE_CREATE into plain values for the normalizer, and reports its state as
 * snapshots (connected, guilds, latency, last error, the MessageContent intent); it never throws after
 * `start`.
 */
import type { Client, Message } from 'discord.js';
import { httpClientAttributes, tracedCall, type Tracing } from '../../runtime/tracing.js';
import type { DiscordChatMessage } from './normalize.js';
import type { DiscordMessageBody, DiscordTransport } from './egress.js';

/** Application flags meaning the MessageContent intent is enabled (full or limited). */
const MESSAGE_CONTENT_FLAGS = (1 << 19) | (1 << 18);

/** What to tell the operator when message content does not arrive. */
export const MESSAGE_CONTENT_FIX =
  'Message content is not readable: enable "Message Content Intent" under Bot → Privileged Gateway Intents in the Discord Developer Portal (https://discord.com/developers/applications), then restart; until then commands arrive empty.';
/** What to tell the operator after close code 4014. */
export const DISALLOWED_INTENTS_FIX =
  'Discord closed the connection with 4014 (disallowed intents): the bot asks for the Message Content intent, which is not enabled for it. Enable "Message Content Intent" under Bot → Privileged Gateway Intents in the Discord Developer Portal (https://discord.com/developers/applications); the bot connects on its next try.';

/** First delay before connecting again after a failed login; it doubles up to RETRY_MAX_MS. */
export const DEFAULT_RETRY_INITIAL_MS = 5_000;
const RETRY_MAX_MS = 5 * 60_000;

/** How long `stop` waits for a login under way before leaving it to discord.js's own timeouts. */
const STOP_WAIT_MS = 5_000;

export type DiscordStatus = 'connected' | 'disconnected' | 'connecting' | 'error' | 'not_configured';

export interface DiscordSnapshot {
  status: DiscordStatus;
  botUser?: { id: string; username: string };
  guilds: Array<{ id: string; name: string; channels: Array<{ id: string; name: string }> }>;
  latencyMs: number | null;
  lastError: { code: string; message: string; at: string } | null;
  /** True once Discord is known not to send message content (flags or empty messages). */
  messageContentMissing: boolean;
  authStatus: 'valid' | 'invalid' | 'unknown';
  counters: { messagesIn: number; messagesOut: number; errors: number; reconnects: number };
}

export interface DiscordConnectorOptions {
  token: string;
  /** REST base handed to discord.js (`https://discord.com/api` by default); the gateway URL comes from it. */
  apiUrl: string;
  /** Channel ids to listen in; empty: every text channel the bot can read. */
  channels: readonly string[];
  /** First reconnect delay after a failed login (default 5 s, doubling up to 5 min). */
  retryInitialMs?: number;
  onMessage(message: DiscordChatMessage): void;
  onStateChange(snapshot: DiscordSnapshot): void;
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; debug(obj: object, msg?: string): void };
  /**
   * The host's tracer: every REST call discord.js makes (the login's, the replies, the go-live posts) is
   * then a client span `discord.rest <METHOD> <route>`, a root outside a message and a child of the
   * message's span inside one.
   */
  tracing?: Tracing;
}

export interface DiscordConnector extends DiscordTransport {
  start(): Promise<void>;
  stop(): Promise<void>;
  snapshot(): DiscordSnapshot;
  /** Edits a message the bot posted. */
  edit(
    channelId: string,
    messageId: string,
    body: { content: string; allowed_mentions?: DiscordMessageBody['allowed_mentions'] },
  ): Promise<void>;
  /** The guild a (cached) channel belongs to. */
  guildOf(channelId: string): string | undefined;
}

/** Creates the connector; nothing is loaded or connected before `start`. */
export function createDiscordConnector(options: DiscordConnectorOptions): DiscordConnector {
  let client: Client | undefined;
  let routes: typeof import('discord.js').Routes | undefined;
  let status: DiscordStatus = 'connecting';
  let lastError: DiscordSnapshot['lastError'] = null;
  let messageContentMissing = false;
  let authStatus: DiscordSnapshot['authStatus'] = 'unknown';
  let stopped = false;
  let login: Promise<string> | undefined;
  let discord: typeof import('discord.js') | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let attempts = 0;
  const counters = { messagesIn: 0, messagesOut: 0, errors: 0, reconnects: 0 };
  const listen = new Set(options.channels);

  const fail = (code: string, message: string) => {
    counters.errors += 1;
    lastError = { code, message, at: new Date().toISOString() };
  };
  const readable = (channelId: string): boolean => {
    if (listen.size > 0) return listen.has(channelId);
    const channel = client?.channels.cache.get(channelId);
    if (!channel || !('guild' in channel) || !channel.isTextBased()) return false;
    const me = channel.guild.members.me;
    return !me || Boolean(channel.permissionsFor(me)?.has('ViewChannel'));
  };
  const snapshot = (): DiscordSnapshot => ({
    status,
    ...(client?.user ? { botUser: { id: client.user.id, username: client.user.username } } : {}),
    guilds: client
      ? [...client.guilds.cache.values()].map((guild) => ({
          id: guild.id,
          name: guild.name,
          channels: [...guild.channels.cache.values()]
            .filter((channel) => channel.isTextBased() && readable(channel.id))
            .map((channel) => ({ id: channel.id, name: channel.name })),
        }))
      : [],
    latencyMs: client && client.ws.ping >= 0 ? Math.round(client.ws.ping) : null,
    lastError,
    messageContentMissing,
    authStatus,
    counters: { ...counters },
  });
  const report = () => options.onStateChange(snapshot());

  /**
   * The text as people read it: `<@id>` mentions become `@username` (the bot's own as its username,
   * which is what BOT_NAME and the analyzer's mention detection look for), roles `@name`, channels
   * `#name`.
   */
  const readableText = (message: Message<true>): string =>
    message.content
      .replace(/<@!?(\d+)>/g, (raw, id: string) => {
        const user = id === client?.user?.id ? client.user : message.mentions.users.get(id);
        return user ? `@${user.username}` : raw;
      })
      .replace(/<@&(\d+)>/g, (raw, id: string) => {
        const role = message.guild.roles.cache.get(id);
        return role ? `@${role.name}` : raw;
      })
      .replace(/<#(\d+)>/g, (raw, id: string) => {
        const channel = message.guild.channels.cache.get(id);
        return channel ? `#${channel.name}` : raw;
      });

  const onMessage = (message: Message) => {
    if (!message.inGuild() || message.author.bot || message.system) return;
    if (!readable(message.channelId)) return;
    const empty =
      message.content === '' &&
      message.attachments.size === 0 &&
      message.embeds.length === 0 &&
      message.stickers.size === 0 &&
      message.poll === null &&
      message.messageSnapshots.size === 0;
    if (empty && !messageContentMissing) {
      // Discord sends no error when the intent is missing: an empty text message is the only sign.
      messageContentMissing = true;
      fail('MESSAGE_CONTENT_MISSING', MESSAGE_CONTENT_FIX);
      report();
    }
    counters.messagesIn += 1;
    const member = message.member;
    const channel = message.channel;
    options.onMessage({
      id: message.id,
      channelId: message.channelId,
      channelName: 'name' in channel ? channel.name : message.channelId,
      guildId: message.guildId,
      guildName: message.guild.name,
      guildOwnerId: message.guild.ownerId,
      author: {
        id: message.author.id,
        username: message.author.username,
        globalName: message.author.globalName,
        avatarUrl: message.author.displayAvatarURL(),
      },
      content: readableText(message),
      roles: member
        ? [...member.roles.cache.values()].filter((role) => role.id !== message.guildId).map((role) => ({ id: role.id, name: role.name }))
        : [],
      canManageMessages: member ? Boolean(channel.permissionsFor(member)?.has('ManageMessages')) : false,
      ...(message.reference?.messageId ? { replyToMessageId: message.reference.messageId } : {}),
      receivedAt: new Date(message.createdTimestamp),
    });
  };

  /** Delay before reconnect attempt `n` (1-based): doubling from the initial delay, at most 5 minutes. */
  const retryDelay = (n: number) => Math.min((options.retryInitialMs ?? DEFAULT_RETRY_INITIAL_MS) * 2 ** Math.min(n - 1, 16), RETRY_MAX_MS);
  const scheduleReconnect = () => {
    if (stopped || retryTimer) return;
    attempts += 1;
    const delay = retryDelay(attempts);
    options.logger.info({ attempt: attempts, delayMs: delay }, 'discord reconnecting later');
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void connect();
    }, delay);
    retryTimer.unref();
  };

  /**
   * One client and login. A refused token is final (a new token needs a restart anyway); anything else
   * (4014 until the intent is enabled, Discord unreachable, a gateway that closed for good) is tried again
   * with backoff, so fixing it in the Developer Portal needs no restart.
   */
  const connect = async (): Promise<void> => {
    if (stopped || !discord) return;
    const { GatewayIntentBits, Events } = discord;
    const current = new discord.Client({
      intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
      rest: { api: options.apiUrl },
    });
    if (options.tracing) traceRest(current.rest, options.tracing);
    client = current;
    let readyOnce = false;
    status = 'connecting';
    current.on(Events.ClientReady, (ready) => {
      // A login that finished after stop(): close it instead of leaving a live bot behind.
      if (stopped) return void ready.destroy();
      readyOnce = true;
      attempts = 0;
      authStatus = 'valid';
      status = 'connected';
      messageContentMissing = (ready.application.flags.bitfield & MESSAGE_CONTENT_FLAGS) === 0;
      if (messageContentMissing) fail('MESSAGE_CONTENT_MISSING', MESSAGE_CONTENT_FIX);
      else if (lastError && ['DISALLOWED_INTENTS', 'LOGIN_FAILED', 'GATEWAY_CLOSED', 'MESSAGE_CONTENT_MISSING'].includes(lastError.code))
        lastError = null;
      options.logger.info({ user: ready.user.username, guilds: ready.guilds.cache.size }, 'discord connected');
      report();
    });
    current.on(Events.MessageCreate, onMessage);
    current.on(Events.ShardReconnecting, () => {
      counters.reconnects += 1;
      status = 'connecting';
      report();
    });
    // After a reconnect Discord either resumes the session or, when it cannot, the shard identifies anew.
    current.on(Events.ShardReady, () => {
      if (status === 'connected' || !readyOnce) return;
      status = 'connected';
      report();
    });
    current.on(Events.ShardResume, () => {
      status = 'connected';
      report();
    });
    current.on(Events.ShardError, (error) => {
      fail('GATEWAY_ERROR', error.message);
      report();
    });
    current.on(Events.ShardDisconnect, (event) => {
      if (stopped) return;
      status = 'error';
      if (event.code === 4014) fail('DISALLOWED_INTENTS', DISALLOWED_INTENTS_FIX);
      else if (event.code === 4004) {
        authStatus = 'invalid';
        fail('AUTHENTICATION_FAILED', 'Discord refused the bot token (4004): check the DISCORD_BOT_TOKEN secret.');
      } else fail('GATEWAY_CLOSED', `the gateway closed with code ${event.code}`);
      report();
      // During the first login the rejected login() decides; after it, discord.js gives up here.
      if (readyOnce && event.code !== 4004) void current.destroy().finally(scheduleReconnect);
    });
    report();
    login = current.login(options.token);
    try {
      await login;
    } catch (error) {
      if (stopped) return;
      status = 'error';
      const message = (error as Error).message ?? String(error);
      let retry = true;
      if (/disallowed intents/i.test(message)) fail('DISALLOWED_INTENTS', DISALLOWED_INTENTS_FIX);
      else if ((error as { code?: string }).code === 'TokenInvalid' || /authentication failed/i.test(message)) {
        authStatus = 'invalid';
        retry = false;
        fail('AUTHENTICATION_FAILED', 'Discord refused the bot token: check the DISCORD_BOT_TOKEN secret.');
      } else fail('LOGIN_FAILED', `could not connect to Discord: ${message}`);
      options.logger.warn({ code: lastError?.code, error: lastError?.message }, 'discord login failed');
      report();
      if (retry) scheduleReconnect();
    }
  };

  return {
    async start() {
      // Loaded here, not at the top: the embedded mode pays nothing for Discord when it is not configured.
      discord = await import('discord.js');
      routes = discord.Routes;
      await connect();
    },
    async stop() {
      stopped = true;
      status = 'disconnected';
      if (retryTimer) clearTimeout(retryTimer);
      await client?.destroy();
      // A login still under way connects after the first destroy; wait for it and close that too.
      if (login) {
        let timer: NodeJS.Timeout | undefined;
        const settled = await Promise.race([
          login.then(
            () => true,
            () => true,
          ),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(false), STOP_WAIT_MS);
          }),
        ]);
        clearTimeout(timer);
        if (settled) await client?.destroy();
      }
    },
    snapshot,
    isConfigured: () => client !== undefined,
    async post(channelId, body, signal) {
      if (!client || !routes) throw new Error('discord is not started');
      const created = (await client.rest.post(routes.channelMessages(channelId), { body, ...(signal ? { signal } : {}) })) as {
        id: string;
      };
      counters.messagesOut += 1;
      return { id: created.id };
    },
    async edit(channelId, messageId, body) {
      if (!client || !routes) throw new Error('discord is not started');
      await client.rest.patch(routes.channelMessage(channelId, messageId), { body });
    },
    guildOf(channelId) {
      const channel = client?.channels.cache.get(channelId);
      return channel && 'guildId' in channel ? (channel.guildId ?? undefined) : undefined;
    },
  };
}

/**
 * A route as a low-cardinality template without secrets: every segment that is not a plain word (ids,
 * webhook and interaction tokens, emoji) becomes `:id`. `/channels/123/messages` → `/channels/:id/messages`.
 */
export function discordRouteTemplate(route: string): string {
  return route
    .split('?')[0]!
    .split('/')
    .map((segment) => (segment === '' || /^@?[a-z][a-z-]*$/.test(segment) ? segment : ':id'))
    .join('/');
}

/**
 * Wraps `rest.queueRequest`, the public method every discord.js REST call (get, post, patch, … and the
 * client's own) goes through, so each is a span with Discord's status.
 */
function traceRest(rest: Client['rest'], tracing: Tracing): void {
  const queueRequest = rest.queueRequest.bind(rest);
  const statusOf = (error: unknown) => {
    const status = (error as { status?: unknown } | undefined)?.status;
    return typeof status === 'number' ? status : undefined;
  };
  rest.queueRequest = (request) => {
    const route = discordRouteTemplate(request.fullRoute);
    return tracedCall(
      tracing,
      `discord.rest ${request.method} ${route}`,
      {
        attributes: () => {
          const base = `${rest.options.api.replace(/\/+$/, '')}/v${rest.options.version}`;
          const { 'url.full': full, ...http } = httpClientAttributes(request.method, `${base}${route}`);
          // Built from the route with its ids as :id, so not the URL called: its path is the url.template.
          const template = typeof full === 'string' ? new URL(full).pathname : undefined;
          return { ...http, 'url.template': template, 'bitbrat.platform': 'discord' };
        },
        describeError: (error) => ({
          type: String(statusOf(error) ?? (error instanceof Error ? error.name : 'Error')),
          message: error instanceof Error ? error.message : String(error),
        }),
      },
      async (span) => {
        try {
          const response = await queueRequest(request);
          span?.setAttributes({ 'http.response.status_code': response.status });
          return response;
        } catch (error) {
          span?.setAttributes({ 'http.response.status_code': statusOf(error) });
          throw error;
        }
      },
    );
  };
}
