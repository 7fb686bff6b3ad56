/**
 * The Twitch chat connector: one Twurple ChatClient at a time, joined to the configured channels, with a
 * small state machine (not_configured → connecting → connected ⇄ disconnected / error) and its own capped
 * exponential reconnect backoff.
 *
 * Why a fresh ChatClient per connection: Twurple's connection layer always reconnects by itself on a
 * Fibonacci schedule that cannot be configured. So the connector takes over on every unexpected
 * disconnect: it abandons that client (quits it and refuses it new sockets) and dials again with its own
 * backoff, so the retry policy is the one configured here (IRC_RECONNECT_INITIAL_MS / _MAX_MS) and tested.
 */
import net from 'node:net';
import tls from 'node:tls';
// Twurple is loaded when a connection is made, so a platform without Twitch configured never loads it.
import type { ChatClient, ChatMessage } from '@twurple/chat';
import type { AuthProvider } from '@twurple/auth';
import { channelName, type IrcChatMessage } from './normalize.js';
import { SendError, type ChatTransport } from './egress.js';
import { safeAuthErrorMessage } from './auth.js';

export const ConnectorStatus = {
  not_configured: 'not_configured',
  connecting: 'connecting',
  connected: 'connected',
  disconnected: 'disconnected',
  error: 'error',
} as const;
export type ConnectorStatus = (typeof ConnectorStatus)[keyof typeof ConnectorStatus];

export type AuthStatus = 'valid' | 'expired' | 'missing' | 'invalid' | 'unknown';

export const DEFAULT_CHAT_OPTIONS = {
  /** First reconnect delay. */
  reconnectInitialMs: 1_000,
  /** Reconnect delays double up to this. */
  reconnectMaxMs: 30_000,
  /** A connection that has not joined its channels by then is dropped and retried. */
  connectTimeoutMs: 20_000,
  /** How long a sent message waits for Twitch's USERSTATE (its id) or a refusal NOTICE. */
  confirmTimeoutMs: 1_500,
  /** How long a send waits for a reconnect before giving up. */
  sendConnectWaitMs: 5_000,
  /** How often a connector without a token checks for one (the OAuth flow may store it later). */
  tokenPollMs: 30_000,
} as const;

export interface ChannelPermissions {
  moderator: boolean;
  vip: boolean;
  broadcaster: boolean;
}

export interface ChannelCounters {
  messagesIn: number;
  messagesOut: number;
  errors: number;
}

export interface ConnectorError {
  code: string;
  message: string;
  at: string;
}

/** A JSON-safe view of the connector; contains no token. */
export interface TwitchChatSnapshot {
  status: ConnectorStatus;
  configured: boolean;
  botUsername?: string;
  channels: string[];
  joinedChannels: string[];
  failedChannels: string[];
  authStatus: AuthStatus;
  authSource?: string;
  connectedAt?: string;
  lastDisconnectAt?: string;
  lastReconnectAt?: string;
  reconnectAttempt: number;
  nextReconnectAt?: string;
  counters: { messagesIn: number; messagesOut: number; errors: number; reconnects: number };
  perChannel: Record<string, ChannelCounters & { roomId?: string }>;
  permissions: Record<string, ChannelPermissions>;
  latencyMs: number | null;
  lastError: ConnectorError | null;
}

/** Resolves the auth provider for each connection attempt (undefined: no token configured). */
export interface ChatAuthSource {
  resolve(): Promise<{ provider: AuthProvider; source: string; login?: string } | undefined>;
}

export interface TwitchChatOptions {
  /** Channel logins to join. Empty: the connector is not configured. */
  channels: string[];
  /** TWITCH_BOT_USERNAME (informational; Twurple takes the nick from the token). */
  botUsername?: string;
  auth: ChatAuthSource;
  /** TWITCH_IRC_URL, e.g. `ws://127.0.0.1:7000`; default Twitch's `wss://irc-ws.chat.twitch.tv:443`. */
  ircUrl?: string;
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  connectTimeoutMs?: number;
  confirmTimeoutMs?: number;
  sendConnectWaitMs?: number;
  tokenPollMs?: number;
  logger?: {
    debug: (...args: any[]) => void;
    info: (...args: any[]) => void;
    warn: (...args: any[]) => void;
    error: (...args: any[]) => void;
  };
  /** Every chat message, in arrival order. */
  onMessage?: (message: IrcChatMessage & { receivedAt: Date }) => void;
  /** Called after every status change (and auth status change). */
  onStateChange?: (snapshot: TwitchChatSnapshot) => void;
}

export interface TwitchChatConnector extends ChatTransport {
  start(): void;
  stop(): Promise<void>;
  readonly status: ConnectorStatus;
  snapshot(): TwitchChatSnapshot;
  /** Sends a PING and records the round trip; undefined when not connected or no PONG in time. */
  measureLatency(timeoutMs?: number): Promise<number | undefined>;
  /** Resolves true once connected, false after the timeout. */
  whenConnected(timeoutMs: number): Promise<boolean>;
}

/** Capped exponential backoff: initial, 2×, 4×, … up to max. `attempt` is 1-based. */
export function reconnectDelayMs(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
}

/** Permissions from a USERSTATE's tags. */
export function permissionsFromTags(tags: ReadonlyMap<string, string>, channel: string, botLogin?: string): ChannelPermissions {
  const badges = (tags.get('badges') ?? '').split(',').map((badge) => badge.split('/')[0]);
  const broadcaster = badges.includes('broadcaster') || (botLogin !== undefined && botLogin.toLowerCase() === channel);
  return {
    moderator: broadcaster || badges.includes('moderator') || tags.get('mod') === '1',
    vip: badges.includes('vip') || tags.has('vip'),
    broadcaster,
  };
}

interface Session {
  generation: number;
  client: ChatClient;
  abandoned: boolean;
  registered: boolean;
  joined: Set<string>;
  failed: Set<string>;
  connectTimer?: NodeJS.Timeout;
}

interface PendingConfirmation {
  resolve(value: { platformMessageId?: string }): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** Creates the chat connector (call start()). */
export function createTwitchChat(options: TwitchChatOptions): TwitchChatConnector {
  const channels = [...new Set(options.channels.map(channelName).filter(Boolean))];
  const initialMs = options.reconnectInitialMs ?? DEFAULT_CHAT_OPTIONS.reconnectInitialMs;
  const maxMs = Math.max(initialMs, options.reconnectMaxMs ?? DEFAULT_CHAT_OPTIONS.reconnectMaxMs);
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CHAT_OPTIONS.connectTimeoutMs;
  const confirmTimeoutMs = options.confirmTimeoutMs ?? DEFAULT_CHAT_OPTIONS.confirmTimeoutMs;
  const sendConnectWaitMs = options.sendConnectWaitMs ?? DEFAULT_CHAT_OPTIONS.sendConnectWaitMs;
  const tokenPollMs = options.tokenPollMs ?? DEFAULT_CHAT_OPTIONS.tokenPollMs;
  const log = options.logger;
  const target = parseIrcUrl(options.ircUrl);

  let status: ConnectorStatus = channels.length === 0 ? 'not_configured' : 'disconnected';
  let authStatus: AuthStatus = 'unknown';
  let authSource: string | undefined;
  let botLogin = options.botUsername?.toLowerCase();
  let session: Session | undefined;
  let generation = 0;
  let stopped = true;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let reconnectAttempt = 0;
  let hadConnection = false;
  let nextReconnectAt: number | undefined;
  let connectedAt: number | undefined;
  let lastDisconnectAt: number | undefined;
  let lastReconnectAt: number | undefined;
  let reconnects = 0;
  let errors = 0;
  let latencyMs: number | null = null;
  let lastError: ConnectorError | null = null;
  let pingSeq = 0;
  const pings = new Map<string, (at: number) => void>();
  const perChannel = new Map<string, ChannelCounters & { roomId?: string }>(
    channels.map((channel) => [channel, { messagesIn: 0, messagesOut: 0, errors: 0 }]),
  );
  const permissions = new Map<string, ChannelPermissions>();
  const confirmations = new Map<string, PendingConfirmation[]>();
  const connectedWaiters = new Set<() => void>();

  const counters = (channel: string) => {
    let entry = perChannel.get(channel);
    if (!entry) {
      entry = { messagesIn: 0, messagesOut: 0, errors: 0 };
      perChannel.set(channel, entry);
    }
    return entry;
  };

  const snapshot = (): TwitchChatSnapshot => {
    let messagesIn = 0;
    let messagesOut = 0;
    for (const entry of perChannel.values()) {
      messagesIn += entry.messagesIn;
      messagesOut += entry.messagesOut;
    }
    const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
    return {
      status,
      configured: status !== 'not_configured',
      ...(botLogin ? { botUsername: botLogin } : {}),
      channels: [...channels],
      joinedChannels: session && !session.abandoned ? [...session.joined] : [],
      failedChannels: session && !session.abandoned ? [...session.failed] : [],
      authStatus,
      ...(authSource ? { authSource } : {}),
      ...(connectedAt !== undefined && status === 'connected' ? { connectedAt: iso(connectedAt) } : {}),
      ...(lastDisconnectAt !== undefined ? { lastDisconnectAt: iso(lastDisconnectAt) } : {}),
      ...(lastReconnectAt !== undefined ? { lastReconnectAt: iso(lastReconnectAt) } : {}),
      reconnectAttempt,
      ...(nextReconnectAt !== undefined ? { nextReconnectAt: iso(nextReconnectAt) } : {}),
      counters: { messagesIn, messagesOut, errors, reconnects },
      perChannel: Object.fromEntries([...perChannel].map(([channel, entry]) => [channel, { ...entry }])),
      permissions: Object.fromEntries([...permissions].map(([channel, value]) => [channel, { ...value }])),
      latencyMs,
      lastError: lastError ? { ...lastError } : null,
    };
  };

  const notify = () => {
    try {
      options.onStateChange?.(snapshot());
    } catch (error) {
      log?.error({ err: error }, 'twitch state listener failed');
    }
  };

  const setStatus = (next: ConnectorStatus) => {
    if (status === next) return;
    status = next;
    if (next === 'connected') for (const waiter of [...connectedWaiters]) waiter();
    notify();
  };

  const setAuthStatus = (next: AuthStatus) => {
    if (authStatus === next) return;
    authStatus = next;
    notify();
  };

  const recordError = (code: string, message: string, channel?: string) => {
    errors += 1;
    if (channel) counters(channel).errors += 1;
    lastError = { code, message, at: new Date().toISOString() };
  };

  const rejectConfirmations = (error: Error) => {
    for (const queue of confirmations.values()) {
      for (const pending of queue.splice(0)) {
        clearTimeout(pending.timer);
        pending.reject(error);
      }
    }
  };

  const settleConfirmation = (channel: string, outcome: { id?: string; error?: Error }) => {
    const pending = confirmations.get(channel)?.shift();
    if (!pending) return;
    clearTimeout(pending.timer);
    if (outcome.error) pending.reject(outcome.error);
    else pending.resolve(outcome.id ? { platformMessageId: outcome.id } : {});
  };

  const abandon = (current: Session) => {
    if (current.abandoned) return;
    current.abandoned = true;
    if (current.connectTimer) clearTimeout(current.connectTimer);
    // Quit after the current event dispatch: Twurple starts its own reconnect right after it reports a
    // disconnect, and quitting then also cancels that attempt.
    setImmediate(() => quietly(() => current.client.quit()));
  };

  const scheduleReconnect = (delayMs?: number) => {
    if (stopped || reconnectTimer) return;
    reconnectAttempt += 1;
    const delay = delayMs ?? reconnectDelayMs(reconnectAttempt, initialMs, maxMs);
    nextReconnectAt = Date.now() + delay;
    log?.info({ attempt: reconnectAttempt, delayMs: delay }, 'twitch chat: reconnecting after backoff');
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      nextReconnectAt = undefined;
      void connect();
    }, delay);
  };

  /** The session is lost (dropped, refused, timed out): give up on it and dial again with backoff. */
  const drop = (current: Session, code: string, message: string, next: ConnectorStatus = 'disconnected', delayMs?: number) => {
    if (current.abandoned || current !== session) return;
    abandon(current);
    lastDisconnectAt = Date.now();
    recordError(code, message);
    rejectConfirmations(new SendError('NOT_CONNECTED', `twitch chat disconnected: ${message}`));
    log?.warn({ code, reason: message }, 'twitch chat connection lost');
    setStatus(next);
    scheduleReconnect(delayMs);
  };

  const checkJoined = (current: Session) => {
    if (current.abandoned || current !== session) return;
    if (current.joined.size + current.failed.size < channels.length) return;
    if (current.joined.size === 0) {
      drop(current, 'JOIN_FAILED', `could not join any channel (${[...current.failed].join(', ')})`, 'error');
      return;
    }
    if (current.connectTimer) clearTimeout(current.connectTimer);
    if (hadConnection) {
      reconnects += 1;
      lastReconnectAt = Date.now();
    }
    hadConnection = true;
    reconnectAttempt = 0;
    connectedAt = Date.now();
    log?.info({ channels: [...current.joined], failed: [...current.failed] }, 'twitch chat connected');
    setStatus('connected');
    void measureLatency();
  };

  /** Every socket Twurple opens goes through here: abandoned clients get none, others reach `target`. */
  const createConnection = (current: Session) =>
    ((connectOptions: Record<string, unknown>) => {
      if (current.abandoned || stopped) {
        // An abandoned client trying to reconnect on its own: hand it a dead socket and quit it again.
        setImmediate(() => quietly(() => current.client.quit()));
        const dead = new net.Socket();
        dead.destroy();
        return dead;
      }
      const dial = { ...connectOptions, host: target.host, port: target.port, path: undefined };
      if (target.secure) return tls.connect({ ...dial, servername: net.isIP(target.host) ? '' : target.host } as tls.ConnectionOptions);
      return net.connect(dial as net.NetConnectOpts);
    }) as never;

  const connect = async () => {
    if (stopped) return;
    const gen = ++generation;
    setStatus('connecting');
    const { ChatClient, LogLevel, Reconnect, UserState } = await import('@twurple/chat');
    let auth: Awaited<ReturnType<ChatAuthSource['resolve']>>;
    try {
      auth = await options.auth.resolve();
    } catch (error) {
      if (stopped || gen !== generation) return;
      recordError('AUTH_FAILED', `could not obtain a twitch token: ${safeAuthErrorMessage(error)}`);
      setAuthStatus('invalid');
      setStatus('error');
      scheduleReconnect();
      return;
    }
    if (stopped || gen !== generation) return;
    if (!auth) {
      // No token yet: not configured; look again later (the OAuth flow may store one).
      setAuthStatus('missing');
      setStatus('not_configured');
      reconnectTimer = setTimeout(() => {
        reconnectTimer = undefined;
        void connect();
      }, tokenPollMs);
      return;
    }
    authSource = auth.source;
    if (auth.login) botLogin = auth.login.toLowerCase();

    const current = {
      generation: gen,
      abandoned: false,
      registered: false,
      joined: new Set<string>(),
      failed: new Set<string>(),
    } as Session;
    const client = new ChatClient({
      authProvider: auth.provider,
      authIntents: ['chat'],
      webSocket: true,
      ssl: target.secure,
      hostName: target.host,
      connectionOptions: { wsOptions: { createConnection: createConnection(current) } },
      rejoinChannelsOnReconnect: false,
      // Our reply sender paces messages (egress.ts); open Twurple's own limiter wide so it never re-queues.
      isAlwaysMod: true,
      botLevel: 'verified',
      logger: {
        minLevel: LogLevel.INFO,
        custom: (level, message) => {
          if (level <= LogLevel.ERROR) log?.warn({ twurple: true }, message);
          else log?.debug({ twurple: true }, message);
        },
      },
    });
    current.client = client;
    session = current;
    const live = () => !current.abandoned && session === current && !stopped;

    client.onAuthenticationSuccess(() => {
      if (!live()) return;
      current.registered = true;
      setAuthStatus('valid');
      for (const channel of channels) {
        client.join(channel).then(
          () => {
            if (!live()) return;
            current.joined.add(channel);
            checkJoined(current);
          },
          (error: unknown) => {
            if (!live()) return;
            current.failed.add(channel);
            recordError('JOIN_FAILED', `could not join #${channel}: ${error instanceof Error ? error.message : String(error)}`, channel);
            checkJoined(current);
          },
        );
      }
    });
    client.onAuthenticationFailure((text) => {
      if (!live()) return;
      setAuthStatus('invalid');
      drop(current, 'AUTH_FAILED', `twitch refused the login: ${text}`, 'error');
    });
    client.onTokenFetchFailure((error) => {
      if (!live()) return;
      setAuthStatus(/expired/i.test(error.message) ? 'expired' : 'invalid');
      drop(current, 'AUTH_FAILED', `no valid twitch token: ${safeAuthErrorMessage(error)}`, 'error');
    });
    client.onDisconnect((_manually, reason) => {
      if (!live()) return;
      drop(current, 'DISCONNECTED', reason?.message ? `connection closed (${reason.message})` : 'connection closed');
    });
    // Twurple reports `/me` lines (CTCP ACTION) as actions, not messages: both are chat.
    const ingest = (action: boolean) => (channel: string, user: string, text: string, msg: ChatMessage) => {
      if (!live()) return;
      const name = channelName(channel);
      const entry = counters(name);
      entry.messagesIn += 1;
      const roomId = msg.channelId;
      if (roomId) entry.roomId = roomId;
      try {
        options.onMessage?.({
          channel: name,
          userLogin: user,
          text,
          tags: msg.tags,
          receivedAt: new Date(),
          ...(action ? { action } : {}),
        });
      } catch (error) {
        recordError('INGEST_FAILED', (error as Error).message, name);
        log?.error({ err: error }, 'twitch chat message handler failed');
      }
    };
    client.onMessage(ingest(false));
    client.onAction(ingest(true));
    client.onMessageRatelimit((channel, text) => {
      if (!live()) return;
      const name = channelName(channel);
      recordError('RATE_LIMITED', text, name);
      settleConfirmation(name, { error: new SendError('RATE_LIMITED', `twitch refused the message: ${text}`) });
    });
    client.onMessageFailed((channel, reason) => {
      if (!live()) return;
      const name = channelName(channel);
      recordError('SEND_REFUSED', reason, name);
      settleConfirmation(name, { error: new SendError('SEND_FAILED', `twitch refused the message (${reason})`) });
    });
    client.irc.onTypedMessage(UserState, (msg) => {
      if (!live()) return;
      const name = channelName(msg.channel);
      const next = permissionsFromTags(msg.tags, name, botLogin);
      const previous = permissions.get(name);
      permissions.set(name, next);
      const id = msg.tags.get('id');
      if (id) settleConfirmation(name, { id });
      if (!previous || previous.moderator !== next.moderator || previous.vip !== next.vip || previous.broadcaster !== next.broadcaster)
        notify();
    });
    client.irc.onTypedMessage(Reconnect, () => {
      if (!live()) return;
      // Twitch asks us to move to another server: reconnect right away, not after a backoff.
      drop(current, 'SERVER_RECONNECT', 'twitch asked the client to reconnect', 'disconnected', 0);
    });
    client.irc.onAnyMessage((msg) => {
      if (msg.command !== 'PONG' || !live()) return;
      const text = msg.rawParamValues.at(-1) ?? '';
      pings.get(text)?.(Date.now());
    });

    current.connectTimer = setTimeout(
      () => drop(current, 'CONNECT_TIMEOUT', `not connected within ${connectTimeoutMs} ms`),
      connectTimeoutMs,
    );
    try {
      client.connect();
    } catch (error) {
      drop(current, 'CONNECT_FAILED', (error as Error).message);
    }
  };

  const measureLatency = async (timeoutMs = 5_000): Promise<number | undefined> => {
    const current = session;
    if (!current || current.abandoned || status !== 'connected') return undefined;
    const token = `bitbrat-${++pingSeq}`;
    const started = Date.now();
    const at = await new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => {
        pings.delete(token);
        resolve(undefined);
      }, timeoutMs);
      pings.set(token, (time) => {
        clearTimeout(timer);
        pings.delete(token);
        resolve(time);
      });
      try {
        current.client.irc.sendRaw(`PING :${token}`);
      } catch {
        clearTimeout(timer);
        pings.delete(token);
        resolve(undefined);
      }
    });
    if (at === undefined) return undefined;
    latencyMs = at - started;
    return latencyMs;
  };

  const whenConnected = (timeoutMs: number) =>
    status === 'connected'
      ? Promise.resolve(true)
      : new Promise<boolean>((resolve) => {
          const done = (value: boolean) => {
            clearTimeout(timer);
            connectedWaiters.delete(onConnected);
            resolve(value);
          };
          const onConnected = () => done(true);
          const timer = setTimeout(() => done(false), timeoutMs);
          connectedWaiters.add(onConnected);
        });

  return {
    get status() {
      return status;
    },
    start() {
      if (!stopped) return;
      stopped = false;
      if (channels.length === 0) {
        setAuthStatus('unknown');
        notify();
        return;
      }
      void connect();
    },
    async stop() {
      stopped = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      reconnectTimer = undefined;
      nextReconnectAt = undefined;
      const current = session;
      session = undefined;
      rejectConfirmations(new SendError('NOT_CONNECTED', 'twitch chat is shutting down'));
      for (const waiter of [...connectedWaiters]) waiter();
      if (current) {
        current.abandoned = true;
        if (current.connectTimer) clearTimeout(current.connectTimer);
        quietly(() => current.client.quit());
      }
      if (status !== 'not_configured') setStatus('disconnected');
    },
    snapshot,
    measureLatency,
    whenConnected,
    isPrivileged(channel) {
      const value = permissions.get(channelName(channel));
      return Boolean(value && (value.moderator || value.broadcaster));
    },
    async send(channel, text, replyTo) {
      const name = channelName(channel);
      if (stopped || status === 'not_configured')
        throw new SendError('NOT_CONNECTED', `twitch chat is ${stopped ? 'stopped' : 'not configured'}`);
      if (status !== 'connected' && !(await whenConnected(sendConnectWaitMs))) {
        throw new SendError('NOT_CONNECTED', `twitch chat is ${status}`);
      }
      const current = session;
      if (!current || current.abandoned || stopped) throw new SendError('NOT_CONNECTED', 'twitch chat is not connected');
      const confirmed = new Promise<{ platformMessageId?: string }>((resolve, reject) => {
        const pending: PendingConfirmation = {
          resolve,
          reject,
          // Twitch normally answers within a round trip; no answer is treated as sent without an id.
          timer: setTimeout(() => {
            const queue = confirmations.get(name);
            const index = queue?.indexOf(pending) ?? -1;
            if (index >= 0) queue!.splice(index, 1);
            resolve({});
          }, confirmTimeoutMs),
        };
        const queue = confirmations.get(name) ?? [];
        queue.push(pending);
        confirmations.set(name, queue);
      });
      try {
        await current.client.say(name, text, replyTo ? { replyTo } : {});
      } catch (error) {
        settleConfirmation(name, { error: new SendError('SEND_FAILED', (error as Error).message) });
      }
      const result = await confirmed;
      counters(name).messagesOut += 1;
      return result;
    },
  };
}

function quietly(work: () => void): void {
  try {
    work();
  } catch {
    // Quitting an already closed client throws; nothing to do.
  }
}

interface IrcTarget {
  host: string;
  port: number;
  secure: boolean;
}

/** Parses TWITCH_IRC_URL (`ws://host:port` or `wss://host:port`); default Twitch's secure endpoint. */
export function parseIrcUrl(url: string | undefined): IrcTarget {
  if (!url) return { host: 'irc-ws.chat.twitch.tv', port: 443, secure: true };
  const parsed = new URL(url);
  const secure = parsed.protocol === 'wss:' || parsed.protocol === 'https:';
  return { host: parsed.hostname, port: parsed.port ? Number(parsed.port) : secure ? 443 : 80, secure };
}
