/**
 * Twitch EventSub over WebSocket (seed 004, seed 002): subscribes to the broadcaster's behavioural events
 * with Twurple's EventSubWsListener, normalizes each notification into a `twitch.eventsub.v1` envelope
 * and, for stream.online/offline, also publishes `system.stream.online` / `system.stream.offline`.
 *
 * Twurple owns the socket: session_welcome, subscription creation over Helix, keepalive timeouts
 * (reconnect + re-create subscriptions on the new session) and session_reconnect (hand-over to the new
 * URL keeping the subscriptions). What Twurple does not give handlers is the EventSub message id, which
 * is the only correct dedup key; it is passed to `_handleSingleEventPayload(subscription, payload,
 * messageId)` (public in the 8.1.4 typings, marked @private), so the listener below overrides that one
 * method and normalizes from the raw wire payload there. Twurple's typed handlers are registered only to
 * create the subscriptions.
 */
import type { ApiClient, HelixEventSubSubscription } from '@twurple/api';
import type { AuthProvider } from '@twurple/auth';
import { EventSubSubscription, type EventSubBase } from '@twurple/eventsub-base';
import { EventSubWsListener } from '@twurple/eventsub-ws';
import {
  BitBratError,
  createEnvelope,
  EventType,
  type Envelope,
  type EnvelopeSource,
  type EnvelopeUser,
  SYSTEM_USER,
} from '../../core/index.js';
import type { Tracing } from '../../runtime/tracing.js';
import type { Store } from '../../store/index.js';
import { createHelixClient } from './helix.js';
import { safeTwitchErrorMessage } from './token-store.js';
import { channelName } from './normalize.js';

/** The EventSub subscription types BitBrat listens to, with the version it speaks. */
export const EventSubKind = {
  follow: 'channel.follow',
  update: 'channel.update',
  streamOnline: 'stream.online',
  streamOffline: 'stream.offline',
  raid: 'channel.raid',
  subscribe: 'channel.subscribe',
  subscriptionGift: 'channel.subscription.gift',
  subscriptionMessage: 'channel.subscription.message',
  cheer: 'channel.cheer',
  redemption: 'channel.channel_points_custom_reward_redemption.add',
} as const;
export type EventSubKind = (typeof EventSubKind)[keyof typeof EventSubKind];

/** Versions Twurple 8.1.4 subscribes with (channel.follow v2, channel.update v2, the rest v1). */
export const EVENTSUB_VERSIONS: Readonly<Record<EventSubKind, string>> = {
  'channel.follow': '2',
  'channel.update': '2',
  'stream.online': '1',
  'stream.offline': '1',
  'channel.raid': '1',
  'channel.subscribe': '1',
  'channel.subscription.gift': '1',
  'channel.subscription.message': '1',
  'channel.cheer': '1',
  'channel.channel_points_custom_reward_redemption.add': '1',
};

export const ALL_EVENTSUB_KINDS: readonly EventSubKind[] = Object.values(EventSubKind);

/** Claims of message ids live this long: Twitch redelivers within minutes; Twurple drops notifications older than 10 min. */
export const DEFAULT_DEDUP_TTL_MS = 10 * 60_000;
/** How long stream.online waits for Helix stream info before publishing without it. */
export const DEFAULT_STREAM_INFO_TIMEOUT_MS = 3_000;
/** Namespace of the dedup claims in the store. */
export const EVENTSUB_DEDUP_NAMESPACE = 'eventsub';

type LogFn = (obj: unknown, msg?: string) => void;
export interface EventSubLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

export interface EventSubState {
  status: 'connecting' | 'connected' | 'disconnected' | 'stopped';
  sessionId?: string;
  /** Subscriptions created on the current session / wanted. */
  active: number;
  wanted: number;
  failed: number;
  detail?: string;
  /** Subscriptions Twitch refused or revoked, with its reason (HTTP 403: authorization; 429: a limit). */
  refused?: Array<{ kind: EventSubKind; channel: string; tokenUserId: string; error: string; httpStatus?: number }>;
}

export interface EventSubOptions {
  /** A Twurple ApiClient whose auth provider holds the broadcaster's user token (with the EventSub scopes). */
  apiClient?: ApiClient;
  /** Used to build an ApiClient when `apiClient` is not given. */
  authProvider?: AuthProvider;
  /** The host's tracer, for the ApiClient built from `authProvider` (one given as `apiClient` is used as it is). */
  tracing?: Tracing;
  /** Informational; must match the auth provider's client id when both are given. */
  clientId?: string;
  /** The broadcaster's user id; looked up from `broadcasterLogin` over Helix when missing. */
  broadcasterId?: string;
  /** The broadcaster's login; looked up from `broadcasterId` when missing. */
  broadcasterLogin?: string;
  /** Dedup claims (`claimKey('eventsub', messageId, ttl)`) survive restarts. */
  store: Pick<Store, 'claimKey'>;
  /** Publishes one envelope (the caller picks the topic, normally `internal.ingress.v1`). */
  /** `msgId` lets the bus drop a second publish of the same notification. */
  publish(envelope: Envelope, msgId?: string): Promise<void>;
  logger: EventSubLogger;
  /** Called on every connection / subscription change; report it as health, never throw. */
  onState?(state: EventSubState): void;
  /** Default: every kind (ignored with `targets`). */
  kinds?: readonly EventSubKind[];
  /** Exactly these subscriptions (channels and token users); default every kind of the one broadcaster with its own token. */
  targets?: readonly EventSubTarget[];
  /** Default DEFAULT_DEDUP_TTL_MS. */
  dedupTtlMs?: number;
  /** Default DEFAULT_STREAM_INFO_TIMEOUT_MS. */
  streamInfoTimeoutMs?: number;
  /** EventSub WebSocket URL (ignored when TWURPLE_MOCK_API_PORT is set). Default Twitch's. */
  url?: string;
}

export interface EventSubHandle {
  /** Closes the socket and waits for in-flight notifications to be published. */
  stop(): Promise<void>;
  /** JSON snapshot for `/_debug/twitch`: connection, subscriptions, counters. No secrets. */
  snapshot(): EventSubSnapshot;
}

export interface EventSubSnapshot {
  status: EventSubState['status'];
  sessionId?: string;
  sessions: number;
  /** The first channel (kept for single-channel readers). */
  broadcaster: { id: string; login: string };
  channels: Array<{ id: string; login: string }>;
  subscriptions: Array<{
    kind: EventSubKind;
    version: string;
    channel: string;
    tokenUserId: string;
    status: 'pending' | 'active' | 'failed' | 'revoked';
    twitchId?: string;
    error?: string;
  }>;
  counters: { received: number; published: number; duplicates: number; failed: number };
  lastEventAt?: string;
  lastError?: { message: string; at: string };
}

// ------------------------------------------------------------------------------------- normalization

/** A user as seen in EventSub payloads. */
export interface TwitchUserRef {
  id: string;
  login: string;
  name: string;
}

export interface NormalizedEventSub {
  payload: Record<string, unknown>;
  /** Who did it (follower, subscriber, cheerer, raider, redeemer); undefined for channel/stream events. */
  actor?: TwitchUserRef | 'anonymous';
  /** When it happened according to the payload, when the payload says. */
  occurredAt?: string;
}

type Raw = Record<string, unknown>;

const str = (value: unknown): string | null => (typeof value === 'string' ? value : value == null ? null : String(value));
const num = (value: unknown): number | null =>
  typeof value === 'number' && Number.isFinite(value)
    ? value
    : typeof value === 'string' && value !== '' && Number.isFinite(Number(value))
      ? Number(value)
      : null;

function userRef(raw: Raw, prefix: string): TwitchUserRef | null {
  const id = str(raw[`${prefix}_id`]);
  if (!id) return null;
  const login = str(raw[`${prefix}_login`]) ?? '';
  return { id, login, name: str(raw[`${prefix}_name`]) ?? login };
}

/** `1000` → 1, `2000` → 2, `3000` → 3 (Prime subs arrive as tier 1000). */
function tierLevel(tier: unknown): number | null {
  const value = num(tier);
  return value === null ? null : Math.round(value / 1000);
}

/** What every subscription notification carries: whose channel, who (null when anonymous) and the tier, raw and as 1–3. */
function subscriptionFields(raw: Raw, user: TwitchUserRef | null) {
  return { broadcaster: userRef(raw, 'broadcaster_user'), user, tier: str(raw.tier), tierLevel: tierLevel(raw.tier) };
}

const NORMALIZERS: Record<EventSubKind, (raw: Raw) => NormalizedEventSub> = {
  'channel.follow': (raw) => {
    const user = userRef(raw, 'user');
    return {
      actor: user ?? undefined,
      occurredAt: str(raw.followed_at) ?? undefined,
      payload: { broadcaster: userRef(raw, 'broadcaster_user'), user, followedAt: str(raw.followed_at) },
    };
  },
  'channel.update': (raw) => ({
    payload: {
      broadcaster: userRef(raw, 'broadcaster_user'),
      title: str(raw.title),
      language: str(raw.language),
      categoryId: str(raw.category_id),
      categoryName: str(raw.category_name),
      contentClassificationLabels: Array.isArray(raw.content_classification_labels) ? raw.content_classification_labels.map(String) : [],
    },
  }),
  'stream.online': (raw) => ({
    occurredAt: str(raw.started_at) ?? undefined,
    payload: {
      broadcaster: userRef(raw, 'broadcaster_user'),
      streamId: str(raw.id),
      streamType: str(raw.type),
      startedAt: str(raw.started_at),
    },
  }),
  'stream.offline': (raw) => ({ payload: { broadcaster: userRef(raw, 'broadcaster_user') } }),
  'channel.raid': (raw) => {
    const from = userRef(raw, 'from_broadcaster_user');
    return {
      actor: from ?? undefined,
      payload: { fromBroadcaster: from, toBroadcaster: userRef(raw, 'to_broadcaster_user'), viewers: num(raw.viewers) ?? 0 },
    };
  },
  'channel.subscribe': (raw) => {
    const user = userRef(raw, 'user');
    return {
      actor: user ?? undefined,
      payload: {
        ...subscriptionFields(raw, user),
        isGift: raw.is_gift === true,
      },
    };
  },
  'channel.subscription.gift': (raw) => {
    const anonymous = raw.is_anonymous === true;
    const user = anonymous ? null : userRef(raw, 'user');
    return {
      actor: anonymous ? 'anonymous' : (user ?? undefined),
      payload: {
        ...subscriptionFields(raw, user),
        isAnonymous: anonymous,
        total: num(raw.total) ?? 0,
        cumulativeTotal: num(raw.cumulative_total),
      },
    };
  },
  'channel.subscription.message': (raw) => {
    const user = userRef(raw, 'user');
    const message = (raw.message && typeof raw.message === 'object' ? raw.message : {}) as Raw;
    return {
      actor: user ?? undefined,
      payload: {
        ...subscriptionFields(raw, user),
        message: str(message.text) ?? '',
        cumulativeMonths: num(raw.cumulative_months),
        streakMonths: num(raw.streak_months),
        durationMonths: num(raw.duration_months),
      },
    };
  },
  'channel.cheer': (raw) => {
    const anonymous = raw.is_anonymous === true;
    const user = anonymous ? null : userRef(raw, 'user');
    return {
      actor: anonymous ? 'anonymous' : (user ?? undefined),
      payload: {
        broadcaster: userRef(raw, 'broadcaster_user'),
        user,
        isAnonymous: anonymous,
        bits: num(raw.bits) ?? 0,
        message: str(raw.message) ?? '',
      },
    };
  },
  'channel.channel_points_custom_reward_redemption.add': (raw) => {
    const user = userRef(raw, 'user');
    const reward = (raw.reward && typeof raw.reward === 'object' ? raw.reward : {}) as Raw;
    return {
      actor: user ?? undefined,
      occurredAt: str(raw.redeemed_at) ?? undefined,
      payload: {
        broadcaster: userRef(raw, 'broadcaster_user'),
        user,
        redemptionId: str(raw.id),
        reward: { id: str(reward.id), title: str(reward.title), cost: num(reward.cost), prompt: str(reward.prompt) },
        rewardTitle: str(reward.title),
        userInput: str(raw.user_input) ?? '',
        status: str(raw.status),
        redeemedAt: str(raw.redeemed_at),
      },
    };
  },
};

/** The clean payload for one EventSub event (pure; unknown kinds keep a shallow copy of the raw event). */
export function normalizeEventSubEvent(kind: string, raw: Record<string, unknown>): NormalizedEventSub {
  const normalizer = NORMALIZERS[kind as EventSubKind];
  return normalizer ? normalizer(raw) : { payload: { ...raw } };
}

const ANONYMOUS_USER: EnvelopeUser = { id: 'anonymous', name: 'anonymous', displayName: 'Anonymous', profileImageUrl: '', role: '' };

export interface EventSubNotification {
  messageId: string;
  kind: string;
  version: string;
  event: Record<string, unknown>;
  receivedAt: Date;
  broadcaster: { id: string; login: string };
}

function twitchSource(broadcaster: { id: string; login: string }): EnvelopeSource {
  return { platform: 'twitch', channel: broadcaster.login, channelId: broadcaster.id };
}

/** The `twitch.eventsub.v1` envelope for a notification (seed 004). */
export function buildEventSubEnvelope(notification: EventSubNotification): Envelope {
  const normalized = normalizeEventSubEvent(notification.kind, notification.event);
  const actor = normalized.actor;
  const user: EnvelopeUser =
    actor === 'anonymous'
      ? { ...ANONYMOUS_USER }
      : actor
        ? { id: actor.id, name: actor.login, displayName: actor.name, profileImageUrl: '', role: '' }
        : { ...SYSTEM_USER };
  const createdAt = validIso(normalized.occurredAt) ?? notification.receivedAt.toISOString();
  return createEnvelope({
    type: EventType.twitchEventSub,
    source: twitchSource(notification.broadcaster),
    user,
    payload: normalized.payload,
    timestamp: notification.receivedAt,
    extra: {
      channel: `#${notification.broadcaster.login}`,
      ...(actor && actor !== 'anonymous' ? { userId: actor.id } : {}),
      externalEvent: {
        id: notification.messageId,
        source: 'twitch.eventsub',
        kind: notification.kind,
        version: notification.version,
        createdAt,
        payload: normalized.payload,
        rawPayload: notification.event,
      },
    },
  });
}

export interface StreamInfo {
  title?: string | null;
  game?: string | null;
  gameId?: string | null;
  viewerCount?: number | null;
  startedAt?: string | null;
  language?: string | null;
}

/** The `system.stream.online` / `system.stream.offline` envelope (seed 002), sharing the trace of the EventSub envelope. */
export function buildStreamStatusEnvelope(input: {
  online: boolean;
  eventSub: Envelope;
  info?: StreamInfo;
  broadcaster: { id: string; login: string };
}): Envelope {
  const external = input.eventSub.externalEvent!;
  const known = Object.fromEntries(Object.entries(input.info ?? {}).filter(([, value]) => value !== undefined && value !== null));
  const payload: Record<string, unknown> = {
    sourceId: `twitch:${input.broadcaster.login}`,
    platform: 'twitch',
    channel: input.broadcaster.login,
    channelId: input.broadcaster.id,
    streamStatus: input.online ? 'online' : 'offline',
    eventSubMessageId: external.id,
    at: external.createdAt,
    ...known,
  };
  if (input.online && !payload.startedAt && typeof external.payload.startedAt === 'string') payload.startedAt = external.payload.startedAt;
  if (input.online && typeof external.payload.streamId === 'string') payload.streamId = external.payload.streamId;
  return createEnvelope({
    type: input.online ? EventType.streamOnline : EventType.streamOffline,
    source: twitchSource(input.broadcaster),
    payload,
    traceId: input.eventSub.traceId,
    timestamp: new Date(input.eventSub.timestamp),
    extra: { channel: `#${input.broadcaster.login}` },
  });
}

function validIso(value: string | undefined): string | undefined {
  return value && !Number.isNaN(Date.parse(value)) ? value : undefined;
}

// ------------------------------------------------------------------------------------------ listener

type TwurpleSubscription = Parameters<EventSubWsListener['_handleSingleEventPayload']>[0];

/** One subscription to create: which event of which channel, with whose user token. */
export interface EventSubTarget {
  kind: EventSubKind;
  broadcaster: { id: string; login: string };
  /** The Twitch user whose token creates the subscription (the broadcaster, or the bot). */
  tokenUserId: string;
}

/** The condition Twitch expects for a subscription type (channel.follow names the token user as moderator). */
export function eventSubCondition(target: EventSubTarget): Record<string, string> {
  if (target.kind === 'channel.follow') return { broadcaster_user_id: target.broadcaster.id, moderator_user_id: target.tokenUserId };
  if (target.kind === 'channel.raid') return { to_broadcaster_user_id: target.broadcaster.id };
  return { broadcaster_user_id: target.broadcaster.id };
}

/** Twurple's subscription base; its constructor is internal (absent from the typings), so it is typed here. */
const SubscriptionBase = EventSubSubscription as unknown as abstract new (
  handler: (event: Record<string, unknown>) => void,
  client: EventSubBase,
) => EventSubSubscription<Record<string, unknown>>;

/**
 * A subscription created with the token of `tokenUserId`. Twurple's typed subscriptions take their
 * `authUserId` from the channel (stream.online of X needs X's token), and the listener opens one socket
 * per `authUserId`; keying by the token's user instead keeps every subscription made with the bot's
 * token on one socket, which is what Twitch counts (3 connections per user, 300 subscriptions each).
 */
class TokenUserSubscription extends SubscriptionBase {
  /** What the Twitch CLI calls the event; only used by Twurple's CLI test helper. */
  readonly _cliName = 'bitbrat';

  constructor(
    handler: (event: Record<string, unknown>) => void,
    client: EventSubBase,
    private readonly target: EventSubTarget,
    private readonly apiClient: ApiClient,
  ) {
    super(handler, client);
  }

  get id(): string {
    return `${this.target.kind}.${this.target.broadcaster.id}.${this.target.tokenUserId}`;
  }

  get authUserId(): string {
    return this.target.tokenUserId;
  }

  protected transformData(response: unknown): Record<string, unknown> {
    return response as Record<string, unknown>;
  }

  protected async _subscribe(): Promise<HelixEventSubSubscription> {
    const { kind, tokenUserId } = this.target;
    const transport = await this._getTransportOptions();
    return await this.apiClient.asUser(
      tokenUserId,
      async (ctx) =>
        await ctx.eventSub.createSubscription(kind, EVENTSUB_VERSIONS[kind], eventSubCondition(this.target), transport, tokenUserId),
    );
  }
}

/** Passes the EventSub message id (which Twurple keeps to itself) to `onNotification`. */
class MessageIdListener extends EventSubWsListener {
  onNotification?: (subscription: TwurpleSubscription, payload: Record<string, unknown>, messageId: string) => void;

  override _handleSingleEventPayload(subscription: TwurpleSubscription, payload: Record<string, unknown>, messageId: string): void {
    this.onNotification?.(subscription, payload, messageId);
  }

  /** Registers a subscription made with the target's token user. */
  subscribeTarget(target: EventSubTarget, apiClient: ApiClient): TwurpleSubscription {
    return this._genericSubscribe(TokenUserSubscription, () => undefined, this, target, apiClient) as TwurpleSubscription;
  }
}

interface SubscriptionEntry {
  kind: EventSubKind;
  version: string;
  broadcaster: { id: string; login: string };
  tokenUserId: string;
  subscription: TwurpleSubscription;
  status: 'pending' | 'active' | 'failed' | 'revoked';
  twitchId?: string;
  error?: string;
  /** HTTP status of the last refusal (403 missing authorization, 429 a limit). */
  httpStatus?: number;
}

/**
 * Connects to EventSub and publishes normalized envelopes. With `targets`, subscribes exactly those (any
 * number of channels, each with the token chosen for it); otherwise every kind of one broadcaster with the
 * broadcaster's token. Connection trouble is reported through `onState` and the snapshot, never thrown
 * after start-up; a missing broadcaster is a start-up error.
 */
export async function startEventSub(options: EventSubOptions): Promise<EventSubHandle> {
  const logger = options.logger;
  const dedupTtlMs = options.dedupTtlMs ?? DEFAULT_DEDUP_TTL_MS;
  const streamInfoTimeoutMs = options.streamInfoTimeoutMs ?? DEFAULT_STREAM_INFO_TIMEOUT_MS;
  if (!options.apiClient && !options.authProvider)
    throw new BitBratError('NOT_CONFIGURED', 'startEventSub needs an apiClient or an authProvider');
  const apiClient = options.apiClient ?? createHelixClient({ authProvider: options.authProvider!, tracing: options.tracing });
  if (options.clientId && options.authProvider && options.authProvider.clientId !== options.clientId) {
    logger.warn({ component: 'eventsub' }, 'clientId does not match the auth provider; using the auth provider');
  }
  let targets: readonly EventSubTarget[];
  if (options.targets) {
    targets = options.targets;
  } else {
    const broadcaster = await resolveBroadcaster(apiClient, options.broadcasterId, options.broadcasterLogin);
    targets = (options.kinds ?? ALL_EVENTSUB_KINDS).map((kind) => ({ kind, broadcaster, tokenUserId: broadcaster.id }));
  }
  const channels = [...new Map(targets.map((target) => [target.broadcaster.id, target.broadcaster])).values()];

  const counters = { received: 0, published: 0, duplicates: 0, failed: 0 };
  let status: EventSubState['status'] = 'connecting';
  /** Session per token user (one socket each). */
  const sessionIds = new Map<string, string>();
  let sessions = 0;
  let lastEventAt: string | undefined;
  let lastError: { message: string; at: string } | undefined;
  let detail: string | undefined;
  /** Message ids seen recently in this process: a fallback when the store cannot be reached. */
  const recent = new Map<string, number>();
  let queue: Promise<void> = Promise.resolve();

  const listener = new MessageIdListener({
    apiClient,
    ...(options.url ? { url: options.url } : {}),
    logger: {
      minLevel: 'info',
      custom: (level: number, message: string) => {
        const fn = level <= 1 ? logger.error : level === 2 ? logger.warn : level === 3 ? logger.info : logger.debug;
        fn.call(logger, { component: 'twurple-eventsub' }, message);
      },
    },
  });

  const entries: SubscriptionEntry[] = [];
  const byTwurple = new Map<TwurpleSubscription, SubscriptionEntry>();

  const state = (): EventSubState => ({
    status,
    ...(sessionIds.size ? { sessionId: [...sessionIds.values()][0] } : {}),
    active: entries.filter((entry) => entry.status === 'active').length,
    wanted: entries.length,
    failed: entries.filter((entry) => entry.status === 'failed' || entry.status === 'revoked').length,
    ...(detail ? { detail } : {}),
    refused: entries
      .filter((entry) => entry.status === 'failed' || entry.status === 'revoked')
      .map((entry) => ({
        kind: entry.kind,
        channel: entry.broadcaster.login,
        tokenUserId: entry.tokenUserId,
        error: entry.error ?? 'failed',
        ...(entry.httpStatus ? { httpStatus: entry.httpStatus } : {}),
      })),
  });
  const report = () => {
    try {
      options.onState?.(state());
    } catch (error) {
      logger.warn({ err: error }, 'eventsub onState callback threw');
    }
  };
  const recordError = (message: string) => {
    lastError = { message, at: new Date().toISOString() };
  };

  listener.onUserSocketConnect(() => {
    logger.debug({ component: 'eventsub' }, 'eventsub socket connected');
  });
  listener.onUserSocketReady((userId, readySessionId) => {
    const resumed = readySessionId === sessionIds.get(userId);
    if (!resumed) {
      sessions += 1;
      // A new session starts without subscriptions; Twurple re-creates them now.
      for (const entry of entries) if (entry.tokenUserId === userId && entry.status === 'active') entry.status = 'pending';
    }
    sessionIds.set(userId, readySessionId);
    status = 'connected';
    detail = resumed ? 'reconnected to the same session' : undefined;
    logger.info({ component: 'eventsub', sessionId: readySessionId, resumed }, 'eventsub session ready');
    report();
  });
  listener.onUserSocketDisconnect((userId, error) => {
    if (status === 'stopped') return;
    status = 'disconnected';
    detail = error ? error.message : 'disconnected';
    for (const entry of entries) if (entry.tokenUserId === userId && entry.status === 'active') entry.status = 'pending';
    if (error) recordError(`eventsub socket: ${error.message}`);
    logger.warn({ component: 'eventsub', reason: detail }, 'eventsub socket disconnected; Twurple reconnects');
    report();
  });
  listener.onSubscriptionCreateSuccess((subscription, apiSubscription) => {
    const entry = byTwurple.get(subscription);
    if (!entry) return;
    entry.status = 'active';
    entry.twitchId = apiSubscription.id;
    delete entry.error;
    delete entry.httpStatus;
    report();
  });
  listener.onSubscriptionCreateFailure((subscription, error) => {
    const entry = byTwurple.get(subscription);
    if (!entry) return;
    entry.status = 'failed';
    entry.error = refusalMessage(error);
    const httpStatus = (error as { statusCode?: unknown }).statusCode;
    if (typeof httpStatus === 'number') entry.httpStatus = httpStatus;
    recordError(`subscribe ${entry.kind} #${entry.broadcaster.login}: ${entry.error}`);
    logger.error(
      { component: 'eventsub', kind: entry.kind, channel: entry.broadcaster.login, error: entry.error },
      'eventsub subscription failed',
    );
    report();
  });
  listener.onRevoke((subscription, revokeStatus) => {
    const entry = byTwurple.get(subscription);
    if (!entry) return;
    entry.status = 'revoked';
    entry.error = `revoked by Twitch: ${revokeStatus}`;
    recordError(`${entry.kind} ${entry.error}`);
    logger.warn({ component: 'eventsub', kind: entry.kind, status: revokeStatus }, 'eventsub subscription revoked');
    report();
  });

  const fetchStreamInfo = async (entry: SubscriptionEntry): Promise<StreamInfo | undefined> => {
    const id = entry.broadcaster.id;
    const lookup = apiClient.asUser(entry.tokenUserId, async (ctx) => {
      const stream = await ctx.streams.getStreamByUserId(id);
      if (stream) {
        return {
          title: stream.title,
          game: stream.gameName,
          gameId: stream.gameId,
          viewerCount: stream.viewers,
          startedAt: stream.startDate.toISOString(),
          language: stream.language,
        } satisfies StreamInfo;
      }
      // Helix lags behind EventSub right after going live: fall back to the channel's title and game.
      const channel = await ctx.channels.getChannelInfoById(id);
      return channel
        ? ({ title: channel.title, game: channel.gameName, gameId: channel.gameId, language: channel.language } satisfies StreamInfo)
        : undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), streamInfoTimeoutMs);
    });
    try {
      return await Promise.race([lookup, timeout]);
    } catch (error) {
      logger.warn(
        { component: 'eventsub', error: safeTwitchErrorMessage(error) },
        'stream info lookup failed; publishing stream.online without it',
      );
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };

  /** True when this message id is new here and in the store (a store outage falls back to this process's memory). */
  const claim = async (messageId: string): Promise<boolean> => {
    const now = Date.now();
    for (const [id, expires] of recent) if (expires <= now) recent.delete(id);
    if (recent.has(messageId)) return false;
    recent.set(messageId, now + dedupTtlMs);
    try {
      return await options.store.claimKey(EVENTSUB_DEDUP_NAMESPACE, messageId, dedupTtlMs);
    } catch (error) {
      logger.warn({ component: 'eventsub', err: error, messageId }, 'dedup claim failed; publishing anyway (at-least-once)');
      return true;
    }
  };

  const handle = async (entry: SubscriptionEntry, event: Record<string, unknown>, messageId: string, receivedAt: Date): Promise<void> => {
    if (!(await claim(messageId))) {
      counters.duplicates += 1;
      logger.debug({ component: 'eventsub', kind: entry.kind, messageId }, 'duplicate eventsub notification ignored');
      return;
    }
    const broadcaster = entry.broadcaster;
    const envelope = buildEventSubEnvelope({ messageId, kind: entry.kind, version: entry.version, event, receivedAt, broadcaster });
    const envelopes = [envelope];
    if (entry.kind === 'stream.online' || entry.kind === 'stream.offline') {
      const online = entry.kind === 'stream.online';
      const info = online ? await fetchStreamInfo(entry) : undefined;
      envelopes.push(buildStreamStatusEnvelope({ online, eventSub: envelope, info, broadcaster }));
    }
    // The notification is claimed, so it must not be lost: keep trying until the bus takes it (the
    // bus-level id makes a retried publish harmless) or the connector stops.
    for (const item of envelopes) {
      for (let attempt = 1; ; attempt += 1) {
        try {
          await options.publish(item, `eventsub:${messageId}:${item.type}`);
          counters.published += 1;
          break;
        } catch (error) {
          counters.failed += 1;
          recordError(`publish ${item.type}: ${(error as Error).message}`);
          logger.error(
            { component: 'eventsub', err: error, kind: entry.kind, messageId, type: item.type, attempt },
            'publishing eventsub envelope failed; retrying',
          );
          if (status === 'stopped') return;
          await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 250 * 2 ** Math.min(attempt, 5))));
        }
      }
    }
  };

  listener.onNotification = (subscription, payload, messageId) => {
    const entry = byTwurple.get(subscription);
    if (!entry || status === 'stopped') return;
    counters.received += 1;
    const receivedAt = new Date();
    lastEventAt = receivedAt.toISOString();
    // One at a time, in arrival order: stream.online must not overtake an earlier offline.
    queue = queue.then(() =>
      handle(entry, payload, messageId, receivedAt).catch((error: unknown) => {
        counters.failed += 1;
        recordError((error as Error).message);
        logger.error({ component: 'eventsub', err: error, kind: entry.kind, messageId }, 'eventsub notification failed');
      }),
    );
  };

  for (const target of targets) {
    const subscription = listener.subscribeTarget(target, apiClient);
    const entry: SubscriptionEntry = {
      kind: target.kind,
      version: EVENTSUB_VERSIONS[target.kind],
      broadcaster: target.broadcaster,
      tokenUserId: target.tokenUserId,
      subscription,
      status: 'pending',
    };
    entries.push(entry);
    byTwurple.set(subscription, entry);
  }
  report();
  listener.start();
  logger.info(
    { component: 'eventsub', channels: channels.map((channel) => channel.login), subscriptions: targets.length },
    'eventsub starting',
  );

  return {
    async stop() {
      if (status === 'stopped') return;
      status = 'stopped';
      detail = undefined;
      listener.stop();
      for (const entry of entries) if (entry.status === 'active') entry.status = 'pending';
      await queue;
      report();
    },
    snapshot() {
      return {
        status,
        ...(sessionIds.size ? { sessionId: [...sessionIds.values()][0] } : {}),
        sessions,
        broadcaster: { ...(channels[0] ?? { id: '', login: '' }) },
        channels: channels.map((channel) => ({ ...channel })),
        subscriptions: entries.map((entry) => ({
          kind: entry.kind,
          version: entry.version,
          channel: entry.broadcaster.login,
          tokenUserId: entry.tokenUserId,
          status: entry.status,
          ...(entry.twitchId ? { twitchId: entry.twitchId } : {}),
          ...(entry.error ? { error: entry.error } : {}),
        })),
        counters: { ...counters },
        ...(lastEventAt ? { lastEventAt } : {}),
        ...(lastError ? { lastError: { ...lastError } } : {}),
      };
    },
  };
}

/** Twitch's own words for a refused subscription (its JSON `message`), without any secret. */
function refusalMessage(error: unknown): string {
  const candidate = error as { statusCode?: unknown; body?: unknown } | undefined;
  if (candidate && typeof candidate.statusCode === 'number' && typeof candidate.body === 'string') {
    try {
      const body = JSON.parse(candidate.body) as { message?: unknown };
      if (typeof body.message === 'string') return `Twitch answered HTTP ${candidate.statusCode}: ${body.message}`;
    } catch {
      // not JSON; fall through
    }
  }
  return safeTwitchErrorMessage(error);
}

async function resolveBroadcaster(
  apiClient: ApiClient,
  id: string | undefined,
  login: string | undefined,
): Promise<{ id: string; login: string }> {
  if (id && login) return { id, login: login.toLowerCase() };
  if (id) {
    const user = await apiClient.users.getUserById(id);
    if (!user) throw new BitBratError('NOT_FOUND', `Twitch user ${id} not found`);
    return { id, login: user.name };
  }
  if (login) {
    const user = await apiClient.users.getUserByName(channelName(login));
    if (!user) throw new BitBratError('NOT_FOUND', `Twitch user ${login} not found`);
    return { id: user.id, login: user.name };
  }
  throw new BitBratError('NOT_CONFIGURED', 'startEventSub needs broadcasterId or broadcasterLogin');
}
