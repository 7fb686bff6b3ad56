/**
 * Twitch IRC chat line → `external.chat.message.v1` envelope, exactly as seed 003 §3/§13 lays it out.
 * Pure: takes the parsed wire values (channel, login, text, IRCv3 tags) so it is testable without a socket.
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { EventType, Topic, createEnvelope, wellFormedText, type Envelope } from '../../core/index.js';
import type { SourceState } from '../../store/index.js';

/** Default reply deadline for chat (R9): a chat answer older than this is not worth sending. */
export const DEFAULT_CHAT_MAX_RESPONSE_MS = 30_000;

/** One chat message as it came off the IRC connection. */
export interface IrcChatMessage {
  /** Channel login, with or without `#`. */
  channel: string;
  /** Chatter login (the IRC nick). */
  userLogin: string;
  text: string;
  /** IRCv3 tags, unescaped. */
  tags: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** When the line was received; the envelope timestamp (the reply deadline counts from it). */
  receivedAt?: Date;
  /** A `/me` message (CTCP ACTION); `text` is without the ACTION wrapper. */
  action?: boolean;
}

export interface NormalizeOptions {
  /** Topic egress listens on; default the shared `internal.egress.v1`. */
  egressDestination?: string;
  /** Default 30 000. */
  maxResponseMs?: number;
}

export interface EmoteRef {
  id: string;
  /** The emote code as typed in the message. */
  name: string;
  positions: Array<{ start: number; end: number }>;
}

function tagRecord(tags: IrcChatMessage['tags']): Record<string, string> {
  return tags instanceof Map ? Object.fromEntries(tags) : { ...(tags as Record<string, string>) };
}

/** `subscriber/12,premium/1` → `['subscriber', 'premium']`. */
export function parseBadgeNames(badges: string | undefined): string[] {
  if (!badges) return [];
  return badges
    .split(',')
    .map((badge) => badge.split('/')[0]!.trim())
    .filter(Boolean);
}

/** `25:0-4,6-10/1902:12-16` → emote references with names cut from the text (offsets count code points). */
export function parseEmotes(emotes: string | undefined, text: string): EmoteRef[] {
  if (!emotes) return [];
  const chars = Array.from(text);
  const out: EmoteRef[] = [];
  for (const entry of emotes.split('/')) {
    const [id, placements] = entry.split(':', 2);
    if (!id || !placements) continue;
    const positions = placements
      .split(',')
      .map((range) => range.split('-').map(Number))
      .filter((range): range is [number, number] => range.length === 2 && range.every((n) => Number.isInteger(n) && n >= 0))
      .map(([start, end]) => ({ start, end }));
    if (positions.length === 0) continue;
    const first = positions[0]!;
    out.push({ id, name: chars.slice(first.start, first.end + 1).join(''), positions });
  }
  return out;
}

/** A channel as Twitch names it: the login, without `#`, lower-case. */
export const channelName = (channel: string): string => channel.replace(/^#/, '').toLowerCase();

/** Builds the ingress envelope for one chat message. */
export function normalizeChatMessage(raw: IrcChatMessage, options: NormalizeOptions = {}): Envelope {
  // Made well-formed before use: `message.text` below is set outside createEnvelope, and emote offsets
  // count code points, which the U+FFFD replacement keeps.
  const input: IrcChatMessage = { ...raw, text: wellFormedText(raw.text), userLogin: wellFormedText(raw.userLogin) };
  const tags = tagRecord(input.tags);
  const channel = channelName(input.channel);
  const login = input.userLogin.toLowerCase();
  const badges = parseBadgeNames(tags.badges);
  const messageId = tags.id ?? '';
  const envelope = createEnvelope({
    type: EventType.chatMessage,
    timestamp: input.receivedAt ?? new Date(),
    source: {
      platform: 'twitch',
      channel,
      channelId: tags['room-id'] ?? '',
      egressDestination: options.egressDestination ?? Topic.egress,
    },
    user: {
      id: tags['user-id'] ?? '',
      name: login,
      displayName: tags['display-name'] || login,
      profileImageUrl: '',
      role: '',
    },
    routingSlip: [],
    finalizationDestination: Topic.finalizer,
    payload: {
      text: input.text,
      messageId,
      badges,
      isMod: tags.mod === '1' || badges.includes('moderator'),
      isSubscriber: tags.subscriber === '1' || badges.includes('subscriber') || badges.includes('founder'),
      color: tags.color ?? '',
      emotes: parseEmotes(tags.emotes, input.text),
      ...(input.action ? { isAction: true } : {}),
      raw: { tags },
    },
  });
  envelope.message = {
    id: messageId,
    text: input.text,
    ...(tags['reply-parent-msg-id'] ? { replyToMessageId: tags['reply-parent-msg-id'] } : {}),
  };
  envelope.qos = { maxResponseMs: options.maxResponseMs ?? DEFAULT_CHAT_MAX_RESPONSE_MS };
  return envelope;
}

/** Connector state for one channel, as seed 002 keeps it in `sources`. */
export interface SourceStatusInput {
  /** Channel login; `''` when no channel is configured. */
  channel: string;
  channelId?: string;
  displayName?: string;
  status: 'connected' | 'disconnected' | 'connecting' | 'error' | 'not_configured';
  /** `lost`: ingress messages that could not reach the bus (buffer full or not flushed at shutdown). */
  metrics: { messagesIn: number; messagesOut: number; errors: number; reconnects: number; lost?: number };
  authStatus: 'valid' | 'expired' | 'missing' | 'invalid' | 'unknown';
  permissions?: { moderator: boolean; vip: boolean; broadcaster: boolean };
  latencyMs: number | null;
  lastError: { code: string; message: string; at: string } | null;
  at?: Date;
}

/** Source id of a Twitch chat channel (`twitch:<channel>`); `twitch:chat` before any channel is configured. */
export function twitchSourceId(channel: string): string {
  return `twitch:${channelName(channel) || 'chat'}`;
}

/** The `sources` patch a `system.source.status` envelope carries, for writing the record directly. */
export function sourceStatusPatch(envelope: Envelope): SourceState {
  const payload = envelope.payload as Record<string, unknown>;
  const patch: Record<string, unknown> = {
    id: String(payload.sourceId ?? twitchSourceId(envelope.source.channel)),
    platform: 'twitch',
    lastStatusUpdate: envelope.timestamp,
  };
  for (const field of ['displayName', 'status', 'lastError', 'authStatus', 'permissions', 'latencyMs', 'metrics'])
    if (payload[field] !== undefined) patch[field] = payload[field];
  return patch as unknown as SourceState;
}

/** A `system.source.status` envelope for internal.ingress.v1 (persistence merges it into `sources`). */
export function buildSourceStatusEnvelope(input: SourceStatusInput): Envelope {
  const at = input.at ?? new Date();
  const channel = channelName(input.channel);
  return createEnvelope({
    type: EventType.sourceStatus,
    timestamp: at,
    source: { platform: 'twitch', channel, channelId: input.channelId ?? '' },
    routingSlip: [],
    payload: {
      sourceId: twitchSourceId(channel),
      platform: 'twitch',
      displayName: input.displayName ?? (channel || 'twitch chat'),
      status: input.status,
      metrics: { ...input.metrics, lastHeartbeat: at.toISOString() },
      authStatus: input.authStatus,
      permissions: input.permissions ?? { moderator: false, vip: false, broadcaster: false },
      latencyMs: input.latencyMs,
      lastError: input.lastError,
    },
  });
}
