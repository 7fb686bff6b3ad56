/**
 * Replies out to Discord: a Discord reply (`message_reference`) to the message that triggered them,
 * split at 2,000 characters keeping line breaks, with `@everyone`/`@here` neutralized in the text and
 * only user mentions allowed to ping. The REST rate limits (per-route buckets, 429 `retry_after`, the
 * global limit) are kept by discord.js's REST client, which waits before sending; the reply deadline
 * (R9) is checked before anything goes out and aborts a request still waiting. Every outcome is a
 * value recorded on the envelope's `delivery`.
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { createHash } from 'node:crypto';
import { DeliveryReason, ErrorCode, replyDeadline, selectReply, type Envelope } from '../../core/index.js';

/** Discord's maximum message length. */
export const DISCORD_MESSAGE_MAX_LENGTH = 2_000;

/** Only users may be pinged by the bot's messages: never @everyone, @here or a role. */
export const SAFE_ALLOWED_MENTIONS = { parse: ['users'] as string[], replied_user: true } as const;

/**
 * `@everyone` and `@here` get a zero-width space after the `@`, so they read the same but are plain
 * text even where a client would highlight them.
 */
export function neutralizeMassMentions(text: string): string {
  return text.replace(/@(everyone|here)\b/gi, '@\u200b$1');
}

/**
 * Splits text into parts of at most `max` UTF-16 units, preferring a line break, then a space, in the
 * second half of a part as the cut; a part never ends inside a surrogate pair. Line breaks inside a
 * part are kept (code blocks, lists).
 */
export function splitDiscordMessage(text: string, max = DISCORD_MESSAGE_MAX_LENGTH): string[] {
  const parts: string[] = [];
  let rest = text.trim();
  while (rest.length > max) {
    const window = rest.slice(0, max + 1);
    // A break in the first half would leave a stub of a part: cut hard at the limit instead.
    let cut = window.lastIndexOf('\n');
    if (cut < max / 2) cut = window.lastIndexOf(' ');
    if (cut < max / 2) {
      cut = max;
      const code = rest.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
    }
    parts.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest) parts.push(rest);
  return parts.filter(Boolean);
}

/**
 * A nonce for one part of one reply (≤ 25 characters, as Discord allows). Sent with `enforce_nonce`,
 * Discord answers a repeated create with the message it already made, so a redelivered envelope
 * (R8) does not post a second reply.
 */
export function replyNonce(key: string, part: number): string {
  return createHash('sha256').update(`${key}:${part}`).digest('base64url').slice(0, 25);
}

/** The body of one message create. */
export interface DiscordMessageBody {
  content: string;
  allowed_mentions: { parse: string[]; replied_user?: boolean };
  message_reference?: { message_id: string; fail_if_not_exists: boolean };
  nonce?: string;
  enforce_nonce?: boolean;
}

/** What the connection offers egress. */
export interface DiscordTransport {
  /** Creates a message; resolves with its id, rejects when Discord refused it or the request was aborted. */
  post(channelId: string, body: DiscordMessageBody, signal?: AbortSignal): Promise<{ id: string }>;
  /** Whether the gateway is connected (REST works without it, but a reply to a dead bot is unexpected). */
  isConfigured(): boolean;
}

/** What egress decided for one envelope. */
export interface DiscordEgressOutcome {
  envelope: Envelope;
  /** Set when the stage must be recorded as failed: the code for errors[]. */
  failure?: { code: string; message: string };
}

/** The message bodies for a reply: split, neutralized, the first part a Discord reply to `replyTo`. */
export function replyBodies(text: string, options: { replyTo?: string; key?: string } = {}): DiscordMessageBody[] {
  return splitDiscordMessage(neutralizeMassMentions(text)).map((content, index) => ({
    content,
    allowed_mentions: { parse: [...SAFE_ALLOWED_MENTIONS.parse], replied_user: SAFE_ALLOWED_MENTIONS.replied_user },
    ...(index === 0 && options.replyTo ? { message_reference: { message_id: options.replyTo, fail_if_not_exists: false } } : {}),
    ...(options.key ? { nonce: replyNonce(options.key, index), enforce_nonce: true } : {}),
  }));
}

/** A short, token-free description of a failed Discord request. */
export function discordErrorMessage(error: unknown): string {
  const value = error as { status?: number; code?: number | string; message?: string; name?: string };
  if (value?.name === 'AbortError') return 'the request was aborted (deadline)';
  const parts = [
    value?.status ? `HTTP ${value.status}` : undefined,
    value?.code !== undefined ? `code ${value.code}` : undefined,
    value?.message,
  ].filter(Boolean);
  return parts.join(': ') || String(error);
}

/**
 * Delivers the envelope's reply (if any) to the Discord channel it came from, as a Discord reply to the
 * triggering message, and records the outcome in `envelope.delivery`.
 */
export async function deliverDiscordReply(
  envelope: Envelope,
  transport: DiscordTransport | undefined,
  options: { signal?: AbortSignal; now?: () => number } = {},
): Promise<DiscordEgressOutcome> {
  const now = options.now ?? Date.now;
  const at = () => new Date(now()).toISOString();
  const channelId = envelope.source.channelId;
  const destination = `discord:${channelId}`;
  const record = (delivery: { delivered: boolean; reason?: string; platformMessageIds?: string[] }): Envelope => ({
    ...envelope,
    delivery: { at: at(), destination, ...delivery },
  });

  if (envelope.source.platform !== 'discord') {
    return { envelope: { ...envelope, delivery: { delivered: false, at: at(), reason: DeliveryReason.UNSUPPORTED_PLATFORM } } };
  }
  const reply = selectReply(envelope);
  if (!reply) return { envelope: record({ delivered: false, reason: DeliveryReason.NO_REPLY }) };
  if (!transport?.isConfigured()) {
    return {
      envelope: record({ delivered: false, reason: DeliveryReason.NOT_CONFIGURED }),
      failure: { code: ErrorCode.NOT_CONFIGURED, message: 'discord is not configured on this instance (set the DISCORD_BOT_TOKEN secret)' },
    };
  }
  const deadlineAt = replyDeadline(envelope);
  if (deadlineAt !== undefined && now() > deadlineAt) {
    return {
      envelope: record({ delivered: false, reason: DeliveryReason.DEADLINE }),
      failure: { code: ErrorCode.DEADLINE, message: 'the reply deadline had passed before sending' },
    };
  }
  const replyTo = envelope.message?.id || (typeof envelope.payload.messageId === 'string' && envelope.payload.messageId) || undefined;
  const bodies = replyBodies(reply.text, { replyTo, key: `${envelope.id}:${reply.id}` });
  if (bodies.length === 0) return { envelope: record({ delivered: false, reason: DeliveryReason.NO_REPLY }) };
  const ids: string[] = [];
  for (const body of bodies) {
    try {
      ids.push((await transport.post(channelId, body, options.signal)).id);
    } catch (error) {
      const aborted = options.signal?.aborted === true;
      const reason = aborted ? DeliveryReason.DEADLINE : DeliveryReason.SEND_FAILED;
      return {
        envelope: record({ delivered: false, reason, ...(ids.length > 0 ? { platformMessageIds: ids } : {}) }),
        failure: aborted
          ? { code: ErrorCode.DEADLINE, message: 'the reply deadline passed while it waited for the Discord rate limit' }
          : { code: ErrorCode.PROVIDER_ERROR, message: `sending to discord failed: ${discordErrorMessage(error)}` },
      };
    }
  }
  return { envelope: record({ delivered: true, platformMessageIds: ids }) };
}
