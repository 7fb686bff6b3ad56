/**
 * Kick webhook payloads → envelopes. Chat is `external.chat.message.v1`; follows and subscriptions are
 * `kick.event.v1` whose `externalEvent.kind` uses the same names as Twitch's EventSub (`channel.follow`,
 * `channel.subscribe`, `channel.subscription.message`, `channel.subscription.gift`) and whose payload has
 * the same fields, so one reaction rule and one template serve both platforms; Kick's own event name is
 * kept in `payload.kickEventType`. `livestream.status.updated` becomes `system.stream.online` / `offline`
 * for the `kick:<slug>` source.
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { EventType, SYSTEM_USER, Topic, createEnvelope, type Envelope, type EnvelopeUser } from '../../core/index.js';
import {
  KickEventType,
  type KickChatMessageEvent,
  type KickFollowEvent,
  type KickLivestreamStatusEvent,
  type KickSubscriptionEvent,
  type KickSubscriptionGiftsEvent,
  type KickWireUser,
} from './wire.js';

/** Envelope type of Kick platform events (follows, subscriptions, stream status). */
export const KICK_EVENT_ENVELOPE_TYPE = 'kick.event.v1';
/** `externalEvent.source` of everything that came by webhook. */
export const KICK_EVENT_SOURCE = 'kick.webhook';
/** A chat answer older than this is not worth sending (R9); Kick's webhooks can already be late. */
export const DEFAULT_KICK_CHAT_MAX_RESPONSE_MS = 30_000;

/** Kick event type → the platform-neutral kind (Twitch EventSub's name) reactions match on. */
export const KICK_REACTION_KINDS: Readonly<Record<string, string>> = {
  [KickEventType.follow]: 'channel.follow',
  [KickEventType.subscriptionNew]: 'channel.subscribe',
  [KickEventType.subscriptionRenewal]: 'channel.subscription.message',
  [KickEventType.subscriptionGifts]: 'channel.subscription.gift',
};

/** A user as BitBrat's payloads carry it (the Twitch normalizer's shape). */
export interface KickUserRef {
  id: string;
  login: string;
  name: string;
}

/** What the webhook route knows about a delivery besides its body. */
export interface KickDelivery {
  eventType: string;
  eventVersion: string;
  messageId: string;
  /** When it arrived here (the envelope's timestamp). */
  receivedAt: Date;
  /** When Kick sent it (the timestamp header). */
  sentAt?: Date;
  /** Where replies to it go: this instance's egress topic. */
  egressDestination?: string;
}

/** The envelopes one delivery becomes (a stream status change yields the event and the status). */
export interface NormalizedKickDelivery {
  envelopes: Envelope[];
  /** The channel slug it belongs to. */
  channel: string;
  /** When it happened according to Kick (`created_at`, `started_at`/`ended_at`), for the lag metric. */
  occurredAt?: Date;
}

type Raw = Record<string, unknown>;

/** Text as a viewer typed it, storable: no NUL, no lone surrogates. */
export function cleanText(text: unknown): string {
  return typeof text === 'string'
    ? text.replaceAll('\u0000', '\ufffd').replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
    : '';
}

const validDate = (value: unknown): Date | undefined => {
  if (typeof value !== 'string') return undefined;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? undefined : new Date(parsed);
};

/** A channel as Kick names it in URLs: the slug, lower-case. */
export const kickChannelName = (slug: string): string => slug.trim().replace(/^@/, '').toLowerCase();

/** Source id of a Kick channel (`kick:<slug>`); `kick:chat` before any channel is configured. */
export function kickSourceId(slug: string): string {
  return `kick:${kickChannelName(slug) || 'chat'}`;
}

export function userRef(user: KickWireUser | null | undefined): KickUserRef | null {
  if (!user || user.is_anonymous || user.user_id == null) return null;
  const name = cleanText(user.username ?? '');
  return { id: String(user.user_id), login: kickChannelName(user.channel_slug ?? name), name };
}

const envelopeUser = (ref: KickUserRef | null, anonymous = false): EnvelopeUser =>
  ref
    ? { id: ref.id, name: ref.login, displayName: ref.name, profileImageUrl: '', role: '' }
    : anonymous
      ? { id: 'anonymous', name: 'anonymous', displayName: 'Anonymous', profileImageUrl: '', role: '' }
      : { ...SYSTEM_USER };

function broadcasterOf(payload: Raw): { slug: string; id: string; ref: KickUserRef | null } {
  const ref = userRef(payload.broadcaster as KickWireUser | undefined);
  return { slug: ref?.login ?? '', id: ref?.id ?? '', ref };
}

/** The envelope source of a delivery to `broadcaster`'s channel (replies go to the delivery's egress topic). */
function kickSource(broadcaster: { slug: string; id: string }, delivery: KickDelivery) {
  return {
    platform: 'kick',
    channel: broadcaster.slug,
    channelId: broadcaster.id,
    egressDestination: delivery.egressDestination ?? Topic.egress,
  };
}

/** A chat message as an ingress envelope, threaded replies kept (`message.replyToMessageId`). */
export function normalizeKickChat(event: KickChatMessageEvent, delivery: KickDelivery): Envelope {
  const broadcaster = broadcasterOf(event as unknown as Raw);
  const sender = userRef(event.sender);
  const badges = (event.sender?.identity?.badges ?? []).map((badge) => String(badge.type ?? '').toLowerCase()).filter(Boolean);
  const text = cleanText(event.content);
  const isBroadcaster = Boolean(sender && sender.id === broadcaster.id) || badges.includes('broadcaster');
  const envelope = createEnvelope({
    type: EventType.chatMessage,
    timestamp: delivery.receivedAt,
    source: kickSource(broadcaster, delivery),
    user: envelopeUser(sender),
    payload: {
      text,
      messageId: event.message_id,
      badges,
      isMod: badges.includes('moderator'),
      isSubscriber: badges.includes('subscriber') || badges.includes('founder') || badges.includes('og'),
      isBroadcaster,
      isVip: badges.includes('vip'),
      color: event.sender?.identity?.username_color ?? '',
      emotes: (event.emotes ?? []).map((emote) => ({
        id: String(emote.emote_id),
        positions: (emote.positions ?? []).map((position) => ({ start: position.s, end: position.e })),
      })),
      raw: { kickEventType: delivery.eventType, messageId: delivery.messageId },
    },
  });
  envelope.message = {
    id: event.message_id,
    text,
    ...(event.replies_to?.message_id ? { replyToMessageId: event.replies_to.message_id } : {}),
  };
  envelope.qos = { maxResponseMs: DEFAULT_KICK_CHAT_MAX_RESPONSE_MS };
  return envelope;
}

/** The payload fields of each reaction kind, as the Twitch normalizer names them. */
function eventPayload(eventType: string, raw: Raw): { actor: KickUserRef | null; anonymous?: boolean; payload: Record<string, unknown> } {
  const broadcaster = userRef(raw.broadcaster as KickWireUser | undefined);
  switch (eventType) {
    case KickEventType.follow: {
      const user = userRef((raw as unknown as KickFollowEvent).follower);
      return { actor: user, payload: { broadcaster, user, followedAt: null } };
    }
    case KickEventType.subscriptionNew:
    case KickEventType.subscriptionRenewal: {
      const event = raw as unknown as KickSubscriptionEvent;
      const user = userRef(event.subscriber);
      const months = typeof event.duration === 'number' ? event.duration : null;
      // Kick has one subscription tier.
      const common = { broadcaster, user, tier: null, tierLevel: 1, durationMonths: months, expiresAt: event.expires_at ?? null };
      return eventType === KickEventType.subscriptionNew
        ? { actor: user, payload: { ...common, isGift: false } }
        : { actor: user, payload: { ...common, cumulativeMonths: months, streakMonths: null, message: '' } };
    }
    case KickEventType.subscriptionGifts: {
      const event = raw as unknown as KickSubscriptionGiftsEvent;
      const anonymous = event.gifter?.is_anonymous === true || event.gifter?.user_id == null;
      const user = anonymous ? null : userRef(event.gifter);
      const giftees = (event.giftees ?? []).map((giftee) => userRef(giftee)).filter((giftee): giftee is KickUserRef => giftee !== null);
      return {
        actor: user,
        anonymous,
        payload: {
          broadcaster,
          user,
          isAnonymous: anonymous,
          total: (event.giftees ?? []).length,
          giftees,
          tier: null,
          tierLevel: 1,
          cumulativeTotal: null,
        },
      };
    }
    default:
      return { actor: null, payload: { broadcaster, ...raw } };
  }
}

/** A follow, subscription or other platform event as a `kick.event.v1` envelope. */
export function normalizeKickEvent(eventType: string, raw: Raw, delivery: KickDelivery): Envelope {
  const broadcaster = broadcasterOf(raw);
  const { actor, anonymous, payload } = eventPayload(eventType, raw);
  const kind = KICK_REACTION_KINDS[eventType] ?? eventType;
  const createdAt = validDate(raw.created_at) ?? delivery.sentAt ?? delivery.receivedAt;
  const full = { ...payload, kickEventType: eventType };
  return createEnvelope({
    type: KICK_EVENT_ENVELOPE_TYPE,
    timestamp: delivery.receivedAt,
    source: kickSource(broadcaster, delivery),
    user: envelopeUser(actor, anonymous),
    payload: full,
    extra: {
      ...(actor ? { userId: actor.id } : {}),
      externalEvent: {
        id: delivery.messageId,
        source: KICK_EVENT_SOURCE,
        kind,
        version: delivery.eventVersion,
        createdAt: createdAt.toISOString(),
        payload: full,
        rawPayload: raw,
      },
    },
  });
}

/** `livestream.status.updated` → `system.stream.online` / `offline` for the channel's `kick:<slug>` source. */
export function normalizeKickStreamStatus(event: KickLivestreamStatusEvent, delivery: KickDelivery): Envelope {
  const broadcaster = broadcasterOf(event as unknown as Raw);
  return buildKickStreamEnvelope({
    slug: broadcaster.slug,
    broadcasterUserId: broadcaster.id,
    online: event.is_live === true,
    title: typeof event.title === 'string' ? cleanText(event.title) : undefined,
    startedAt: event.started_at ?? undefined,
    endedAt: event.ended_at ?? undefined,
    messageId: delivery.messageId,
    at: delivery.receivedAt,
  });
}

/** A stream status envelope for a Kick channel (also used with what `GET /channels` says at start). */
export function buildKickStreamEnvelope(input: {
  slug: string;
  broadcasterUserId: string;
  online: boolean;
  title?: string;
  startedAt?: string;
  endedAt?: string;
  viewerCount?: number;
  messageId?: string;
  at?: Date;
}): Envelope {
  const slug = kickChannelName(input.slug);
  return createEnvelope({
    type: input.online ? EventType.streamOnline : EventType.streamOffline,
    timestamp: input.at ?? new Date(),
    source: { platform: 'kick', channel: slug, channelId: input.broadcasterUserId },
    payload: {
      sourceId: kickSourceId(slug),
      platform: 'kick',
      channel: slug,
      channelId: input.broadcasterUserId,
      streamStatus: input.online ? 'online' : 'offline',
      ...(input.title ? { title: input.title } : {}),
      ...(input.online && input.startedAt ? { startedAt: input.startedAt } : {}),
      ...(!input.online && input.endedAt ? { endedAt: input.endedAt } : {}),
      ...(input.online && typeof input.viewerCount === 'number' ? { viewerCount: input.viewerCount } : {}),
      ...(input.messageId ? { kickMessageId: input.messageId } : {}),
    },
  });
}

/** Every envelope a verified delivery becomes, with the channel and when it happened by Kick's clock. */
export function normalizeKickDelivery(payload: Raw, delivery: KickDelivery): NormalizedKickDelivery {
  const channel = broadcasterOf(payload).slug;
  switch (delivery.eventType) {
    case KickEventType.chatMessage:
      return {
        channel,
        envelopes: [normalizeKickChat(payload as unknown as KickChatMessageEvent, delivery)],
        occurredAt: validDate(payload.created_at),
      };
    case KickEventType.livestreamStatus: {
      const event = payload as unknown as KickLivestreamStatusEvent;
      const record = normalizeKickEvent(delivery.eventType, payload, delivery);
      return {
        channel,
        envelopes: [record, normalizeKickStreamStatus(event, delivery)],
        occurredAt: validDate(event.is_live ? event.started_at : event.ended_at),
      };
    }
    default:
      return { channel, envelopes: [normalizeKickEvent(delivery.eventType, payload, delivery)], occurredAt: validDate(payload.created_at) };
  }
}
