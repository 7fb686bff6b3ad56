/**
 * Chat replies out to Kick through `POST /public/v1/chat`: threaded to the triggering message with
 * `reply_to_message_id`, split at Kick's 500 characters on word boundaries, paced per channel by a
 * sliding window and, when Kick answers 429, paused for its `Retry-After` and tried again, all within the
 * reply's deadline (R9). Every outcome is a value recorded on the envelope's `delivery`.
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { DeliveryReason, ErrorCode, replyDeadline, selectReply, type Envelope } from '../../core/index.js';
import { KickApiError } from './client.js';
import { kickChannelName } from './normalize.js';

/** Kick's maximum chat message length. */
export const KICK_MESSAGE_MAX_LENGTH = 500;

/**
 * Kick does not publish per-channel chat limits for the API; these keep a bot well inside what its chat
 * tolerates for a normal user, and a 429 from Kick pauses the channel on top of them.
 */
export const DEFAULT_KICK_RATE_LIMITS = { windowMs: 30_000, messages: 20, maxQueue: 50 } as const;
export type KickRateLimits = { windowMs: number; messages: number; maxQueue: number };

/** Splits text into chunks of at most `max` UTF-16 units at whitespace; a longer word is cut, never inside a surrogate pair. */
export function splitKickMessage(text: string, max = KICK_MESSAGE_MAX_LENGTH): string[] {
  const chunks: string[] = [];
  let current = '';
  for (let word of text.trim().split(/\s+/).filter(Boolean)) {
    while (word.length > max) {
      if (current) chunks.push(current);
      current = '';
      let cut = max;
      const code = word.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
      chunks.push(word.slice(0, cut));
      word = word.slice(cut);
    }
    if (!current) current = word;
    else if (current.length + 1 + word.length <= max) current += ` ${word}`;
    else {
      chunks.push(current);
      current = word;
    }
  }
  if (current) chunks.push(current);
  return chunks;
}

/** What egress needs from the API: one chat message. */
export interface KickChatTransport {
  send(message: { broadcasterUserId: number; content: string; replyToMessageId?: string }): Promise<{ messageId: string }>;
}

export interface KickReplyRequest {
  channel: string;
  broadcasterUserId: number;
  text: string;
  replyTo?: string;
  /** Epoch ms after which nothing more is sent. */
  deadlineAt?: number;
  signal?: AbortSignal;
  /** Idempotency key: a second request with a key already claimed is not sent. */
  key?: string;
}

export interface KickReplyResult {
  delivered: boolean;
  reason?: DeliveryReason;
  message?: string;
  platformMessageIds: string[];
}

export interface KickReplySenderOptions {
  transport: KickChatTransport;
  limits?: Partial<KickRateLimits>;
  /** Claims a request key; false means it was sent before (a redelivery) and is skipped. */
  beforeSend?: (key: string) => Promise<boolean>;
  now?: () => number;
}

export interface KickReplySender {
  deliver(request: KickReplyRequest): Promise<KickReplyResult>;
  snapshot(): Record<string, { queued: number; sentInWindow: number; pausedUntil: string | null }>;
  close(): void;
}

class Cancelled extends Error {}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new Cancelled('cancelled'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Cancelled('cancelled'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Creates the paced sender: one queue per channel, messages in order. */
export function createKickReplySender(options: KickReplySenderOptions): KickReplySender {
  const limits = { ...DEFAULT_KICK_RATE_LIMITS, ...options.limits };
  const now = options.now ?? Date.now;
  const channels = new Map<string, { chain: Promise<unknown>; queued: number; sent: number[]; pausedUntil: number }>();
  const closing = new AbortController();

  const stateOf = (channel: string) => {
    let state = channels.get(channel);
    if (!state) {
      state = { chain: Promise.resolve(), queued: 0, sent: [], pausedUntil: 0 };
      channels.set(channel, state);
    }
    return state;
  };

  /** Waits for a free slot in the window (and any 429 pause); false when that would pass the deadline. */
  const waitForSlot = async (state: ReturnType<typeof stateOf>, deadlineAt: number | undefined, signal: AbortSignal): Promise<boolean> => {
    for (;;) {
      const at = now();
      state.sent = state.sent.filter((sentAt) => sentAt > at - limits.windowMs);
      const freeAt = Math.max(state.pausedUntil, state.sent.length >= limits.messages ? state.sent[0]! + limits.windowMs : at);
      if (freeAt <= at) return true;
      if (deadlineAt !== undefined && freeAt > deadlineAt) return false;
      await sleep(freeAt - at, signal);
    }
  };

  const run = async (request: KickReplyRequest, state: ReturnType<typeof stateOf>): Promise<KickReplyResult> => {
    const ids: string[] = [];
    const signal = request.signal ? AbortSignal.any([request.signal, closing.signal]) : closing.signal;
    const fail = (reason: DeliveryReason, message: string): KickReplyResult => ({
      delivered: false,
      reason,
      message,
      platformMessageIds: ids,
    });
    if (request.key && options.beforeSend && !(await options.beforeSend(request.key)))
      return fail(DeliveryReason.DUPLICATE, 'this reply was sent before');
    const chunks = splitKickMessage(request.text);
    if (chunks.length === 0) return fail(DeliveryReason.NO_REPLY, 'the reply is empty');
    try {
      for (let index = 0; index < chunks.length; ) {
        if (request.deadlineAt !== undefined && now() > request.deadlineAt)
          return fail(DeliveryReason.DEADLINE, 'the reply deadline passed before it could be sent');
        if (!(await waitForSlot(state, request.deadlineAt, signal)))
          return fail(DeliveryReason.DEADLINE, 'Kick chat limits would delay the reply past its deadline');
        try {
          const sent = await options.transport.send({
            broadcasterUserId: request.broadcasterUserId,
            content: chunks[index]!,
            ...(index === 0 && request.replyTo ? { replyToMessageId: request.replyTo } : {}),
          });
          state.sent.push(now());
          ids.push(sent.messageId);
          index += 1;
        } catch (error) {
          if (error instanceof KickApiError && error.status === 429) {
            // Kick's limit, whatever ours say: pause the channel and try the same chunk again.
            state.pausedUntil = now() + (error.retryAfterMs ?? 1_000);
            continue;
          }
          return fail(DeliveryReason.SEND_FAILED, error instanceof Error ? error.message : String(error));
        }
      }
    } catch (error) {
      if (error instanceof Cancelled)
        return fail(DeliveryReason.CANCELLED, closing.signal.aborted ? 'egress is shutting down' : 'delivery was cancelled');
      throw error;
    }
    return { delivered: true, platformMessageIds: ids };
  };

  return {
    deliver(request) {
      const channel = kickChannelName(request.channel);
      const state = stateOf(channel);
      if (closing.signal.aborted)
        return Promise.resolve({
          delivered: false,
          reason: DeliveryReason.CANCELLED,
          message: 'egress is shutting down',
          platformMessageIds: [],
        });
      if (state.queued >= limits.maxQueue)
        return Promise.resolve({
          delivered: false,
          reason: DeliveryReason.RATE_LIMITED,
          message: `more than ${limits.maxQueue} replies are waiting for #${channel}`,
          platformMessageIds: [],
        });
      state.queued += 1;
      const result = state.chain
        .then(() => run(request, state))
        .finally(() => {
          state.queued -= 1;
        });
      state.chain = result.catch(() => undefined);
      return result;
    },
    snapshot() {
      const at = now();
      return Object.fromEntries(
        [...channels].map(([channel, state]) => [
          channel,
          {
            queued: state.queued,
            sentInWindow: state.sent.filter((sentAt) => sentAt > at - limits.windowMs).length,
            pausedUntil: state.pausedUntil > at ? new Date(state.pausedUntil).toISOString() : null,
          },
        ]),
      );
    },
    close() {
      closing.abort();
    },
  };
}

/** What egress decided for one envelope. */
export interface KickEgressOutcome {
  envelope: Envelope;
  /** Set when the stage must be recorded as failed: the code for errors[]. */
  failure?: { code: string; message: string };
}

/**
 * Delivers the envelope's reply to the Kick channel it came from, threaded under the triggering message,
 * and records the outcome in `envelope.delivery`. `sender` undefined: Kick chat is not configured.
 */
export async function deliverKickReply(
  envelope: Envelope,
  sender: KickReplySender | undefined,
  options: { signal?: AbortSignal; now?: () => number; notConfigured?: string } = {},
): Promise<KickEgressOutcome> {
  const now = options.now ?? Date.now;
  const channel = kickChannelName(envelope.source.channel);
  const record = (delivery: { delivered: boolean; reason?: string; platformMessageIds?: string[] }): Envelope => ({
    ...envelope,
    delivery: { at: new Date(now()).toISOString(), destination: `kick:${channel}`, ...delivery },
  });
  if (envelope.source.platform !== 'kick')
    return {
      envelope: {
        ...envelope,
        delivery: { delivered: false, at: new Date(now()).toISOString(), reason: DeliveryReason.UNSUPPORTED_PLATFORM },
      },
    };
  const reply = selectReply(envelope);
  if (!reply) return { envelope: record({ delivered: false, reason: DeliveryReason.NO_REPLY }) };
  const broadcasterUserId = Number(envelope.source.channelId);
  if (!sender)
    return {
      envelope: record({ delivered: false, reason: DeliveryReason.NOT_CONFIGURED }),
      failure: { code: ErrorCode.NOT_CONFIGURED, message: options.notConfigured ?? 'Kick chat is not configured' },
    };
  if (!Number.isInteger(broadcasterUserId) || broadcasterUserId <= 0) {
    return {
      envelope: record({ delivered: false, reason: DeliveryReason.SEND_FAILED }),
      failure: {
        code: ErrorCode.PROVIDER_ERROR,
        message: `the envelope has no Kick broadcaster id (channelId "${envelope.source.channelId}")`,
      },
    };
  }
  const replyTo = envelope.message?.id || (typeof envelope.payload.messageId === 'string' && envelope.payload.messageId) || undefined;
  const result = await sender.deliver({
    channel,
    broadcasterUserId,
    text: reply.text,
    replyTo,
    deadlineAt: replyDeadline(envelope),
    signal: options.signal,
    key: `${envelope.id}:${reply.id}`,
  });
  const delivery = record({
    delivered: result.delivered,
    ...(result.reason ? { reason: result.reason } : {}),
    ...(result.platformMessageIds.length ? { platformMessageIds: result.platformMessageIds } : {}),
  });
  if (result.delivered) return { envelope: delivery };
  switch (result.reason) {
    case DeliveryReason.DEADLINE:
      return { envelope: delivery, failure: { code: ErrorCode.DEADLINE, message: result.message ?? 'reply deadline passed' } };
    case DeliveryReason.RATE_LIMITED:
      return { envelope: delivery, failure: { code: ErrorCode.RATE_LIMITED, message: result.message ?? 'rate limited' } };
    case DeliveryReason.SEND_FAILED:
    case DeliveryReason.CANCELLED:
      return { envelope: delivery, failure: { code: ErrorCode.PROVIDER_ERROR, message: result.message ?? 'sending to Kick failed' } };
    default:
      return { envelope: delivery };
  }
}
