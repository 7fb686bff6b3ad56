/**
 * Chat replies out to Twitch: threaded to the message that triggered them, split at 500 characters on
 * word boundaries, paced per channel so the bot never exceeds Twitch's limits (20 messages per 30 s, or
 * 100 per 30 s where the bot is moderator or broadcaster), with a bounded queue and the reply deadline
 * (R9) checked before anything is sent. Every outcome is a value recorded on the envelope's `delivery`.
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { DeliveryReason, ErrorCode, replyDeadline, selectReply, type Envelope } from '../../core/index.js';
import { channelName } from './normalize.js';

/** Twitch's maximum PRIVMSG text length. */
export const TWITCH_MESSAGE_MAX_LENGTH = 500;

export const DEFAULT_RATE_LIMITS = {
  /** Sliding window length. */
  windowMs: 30_000,
  /** Messages per window in a channel where the bot has no special role. */
  normal: 20,
  /** Messages per window where the bot is moderator or broadcaster. */
  privileged: 100,
  /** Replies waiting per channel; beyond it a reply is refused with RATE_LIMITED. */
  maxQueue: 50,
} as const;
export type RateLimits = { windowMs: number; normal: number; privileged: number; maxQueue: number };

/** Why a reply was not delivered: defined once in core for every platform. */
export { DeliveryReason };

/**
 * Twitch runs a message that starts with `/` or `.` as a chat command (`/ban`, `.timeout`); a reply is
 * always plain text, whoever produced it, so such a leading character is escaped with a zero-width space.
 */
export function neutralizeChatCommand(text: string): string {
  const trimmed = text.trimStart();
  return /^[/.]/.test(trimmed) ? '\u200b' + trimmed : trimmed;
}

/**
 * Splits text into chunks of at most `max` UTF-16 units (what Twurple and Twitch count), breaking at
 * whitespace; a single word longer than `max` is cut, never inside a surrogate pair.
 */
export function splitMessage(text: string, max = TWITCH_MESSAGE_MAX_LENGTH): string[] {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const chunks: string[] = [];
  let current = '';
  const flush = () => {
    if (current) chunks.push(current);
    current = '';
  };
  for (let word of words) {
    if (current && current.length + 1 + word.length <= max) {
      current += ' ' + word;
      continue;
    }
    flush();
    while (word.length > max) {
      let cut = max;
      const code = word.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
      chunks.push(word.slice(0, cut));
      word = word.slice(cut);
    }
    current = word;
  }
  flush();
  // Every part is plain text, also a part that happens to start with `/` after a split.
  return chunks.map(neutralizeChatCommand);
}

/** What the chat connection offers egress. */
export interface ChatTransport {
  /** Sends one PRIVMSG (≤ 500 chars); resolves with Twitch's id for it when known, rejects when refused. */
  send(channel: string, text: string, replyTo?: string): Promise<{ platformMessageId?: string }>;
  /** Whether the bot is moderator or broadcaster in the channel (the higher limit applies). */
  isPrivileged(channel: string): boolean;
}

/** A refusal from the platform (e.g. NOTICE msg_ratelimit) or a dead connection. */
export class SendError extends Error {
  constructor(
    readonly reason: DeliveryReason,
    message: string,
  ) {
    super(message);
    this.name = 'SendError';
  }
}

export interface ReplyRequest {
  channel: string;
  text: string;
  /** Message id to thread the reply under (reply-parent-msg-id). */
  replyTo?: string;
  /** Absolute time (ms) after which nothing may be sent. */
  deadlineAt?: number;
  /** Aborting removes a queued reply (the handler's deadline signal). */
  signal?: AbortSignal;
  /** Idempotency key handed to `beforeSend` (envelope and candidate id). */
  key?: string;
}

export interface ReplyResult {
  delivered: boolean;
  reason?: DeliveryReason;
  message?: string;
  /** Parts that went out (a split reply is several PRIVMSGs). */
  partsSent: number;
  parts: number;
  platformMessageIds: string[];
}

export interface ReplySenderOptions {
  transport: ChatTransport;
  limits?: Partial<RateLimits>;
  /** Clock (ms), for tests. */
  now?: () => number;
  /**
   * Called before the first part goes out; returning false suppresses the send (idempotency claim). When
   * it throws, nothing is sent and `deliver` rejects with that error (e.g. the store is down: the runtime
   * then holds the message and retries).
   */
  beforeSend?: (request: ReplyRequest) => Promise<boolean>;
}

export interface ChannelQueueSnapshot {
  queued: number;
  sentInWindow: number;
  limit: number;
}

export interface ReplySender {
  deliver(request: ReplyRequest): Promise<ReplyResult>;
  snapshot(): Record<string, ChannelQueueSnapshot>;
  readonly limits: Readonly<RateLimits>;
  /** Refuses everything still queued (shutdown). */
  close(): void;
}

interface Job {
  request: ReplyRequest;
  parts: string[];
  next: number;
  ids: string[];
  done: boolean;
  finish(result: ReplyResult): void;
  fail(error: unknown): void;
}

interface ChannelState {
  /** Send times inside the current window, oldest first: each is a token that comes back windowMs later. */
  sent: number[];
  queue: Job[];
  running: boolean;
  timer?: NodeJS.Timeout;
  wake?: () => void;
}

/**
 * The per-channel pacing: a token bucket whose tokens come back one window after each was spent, which
 * guarantees at most `limit` messages in any window of `windowMs` (a refill-by-rate bucket would allow up
 * to twice the limit within one window and get the bot locked out by Twitch).
 */
export function createReplySender(options: ReplySenderOptions): ReplySender {
  const limits: RateLimits = { ...DEFAULT_RATE_LIMITS, ...options.limits };
  const now = options.now ?? Date.now;
  const channels = new Map<string, ChannelState>();
  let closed = false;

  const stateOf = (channel: string): ChannelState => {
    let state = channels.get(channel);
    if (!state) {
      state = { sent: [], queue: [], running: false };
      channels.set(channel, state);
    }
    return state;
  };
  const limitOf = (channel: string) => (options.transport.isPrivileged(channel) ? limits.privileged : limits.normal);
  const prune = (state: ChannelState, at: number) => {
    while (state.sent.length > 0 && state.sent[0]! <= at - limits.windowMs) state.sent.shift();
  };

  /** When the n-th (0-based) token from now becomes free, given what is already spent. */
  const tokenTime = (state: ChannelState, index: number, limit: number, at: number): number => {
    if (index < limit) {
      const free = limit - state.sent.length;
      if (index < free) return at;
      return state.sent[index - free]! + limits.windowMs;
    }
    return tokenTime(state, index - limit, limit, at) + limits.windowMs;
  };

  const result = (job: Job, delivered: boolean, reason?: DeliveryReason, message?: string): ReplyResult => ({
    delivered,
    ...(reason ? { reason } : {}),
    ...(message ? { message } : {}),
    partsSent: job.next,
    parts: job.parts.length,
    platformMessageIds: job.ids,
  });

  const sleep = (state: ChannelState, ms: number) =>
    new Promise<void>((resolve) => {
      state.wake = resolve;
      state.timer = setTimeout(resolve, Math.max(0, ms));
    });

  const pump = async (channel: string, state: ChannelState) => {
    if (state.running) return;
    state.running = true;
    try {
      while (state.queue.length > 0 && !closed) {
        const job = state.queue[0]!;
        if (job.done) {
          state.queue.shift();
          continue;
        }
        const at = now();
        if (job.next === 0 && job.request.deadlineAt !== undefined && at > job.request.deadlineAt) {
          state.queue.shift();
          job.finish(result(job, false, DeliveryReason.DEADLINE, 'the reply deadline passed while it waited for the rate limit'));
          continue;
        }
        prune(state, at);
        const limit = limitOf(channel);
        if (state.sent.length >= limit) {
          await sleep(state, state.sent[state.sent.length - limit]! + limits.windowMs - at);
          continue;
        }
        if (job.next === 0 && options.beforeSend) {
          let proceed: boolean;
          try {
            proceed = await options.beforeSend(job.request);
          } catch (error) {
            state.queue.shift();
            job.fail(error);
            continue;
          }
          if (job.done) continue;
          if (!proceed) {
            state.queue.shift();
            job.finish(result(job, false, DeliveryReason.DUPLICATE, 'this reply was already sent by an earlier delivery'));
            continue;
          }
        }
        state.sent.push(at);
        try {
          const sent = await options.transport.send(channel, job.parts[job.next]!, job.request.replyTo);
          job.next += 1;
          if (sent.platformMessageId) job.ids.push(sent.platformMessageId);
        } catch (error) {
          state.queue.shift();
          const reason = error instanceof SendError ? error.reason : DeliveryReason.SEND_FAILED;
          job.finish(result(job, false, reason, error instanceof Error ? error.message : String(error)));
          continue;
        }
        if (job.next >= job.parts.length) {
          state.queue.shift();
          job.finish(result(job, true));
        }
      }
    } finally {
      state.running = false;
      state.timer = undefined;
      state.wake = undefined;
    }
  };

  return {
    limits,
    async deliver(request) {
      const channel = channelName(request.channel);
      const parts = splitMessage(request.text);
      const empty: Job = { request, parts, next: 0, ids: [], done: true, finish: () => undefined, fail: () => undefined };
      if (parts.length === 0) return result(empty, false, DeliveryReason.NO_REPLY, 'the reply text is empty');
      if (closed) return result(empty, false, DeliveryReason.CANCELLED, 'egress is shutting down');
      const state = stateOf(channel);
      const at = now();
      if (request.deadlineAt !== undefined && at > request.deadlineAt)
        return result(empty, false, DeliveryReason.DEADLINE, 'the reply deadline had passed before sending');
      const pending = state.queue.filter((job) => !job.done);
      if (pending.length >= limits.maxQueue) {
        return result(empty, false, DeliveryReason.RATE_LIMITED, `the reply queue for #${channel} is full (${limits.maxQueue} waiting)`);
      }
      prune(state, at);
      if (request.deadlineAt !== undefined) {
        // R9: a reply whose last part could only go out after the deadline is not sent at all.
        const ahead = pending.reduce((sum, job) => sum + job.parts.length - job.next, 0);
        const lastPartAt = tokenTime(state, ahead + parts.length - 1, limitOf(channel), at);
        if (lastPartAt > request.deadlineAt) {
          return result(
            empty,
            false,
            DeliveryReason.DEADLINE,
            `the rate limit would delay the reply ${lastPartAt - at} ms, past its deadline`,
          );
        }
      }
      return await new Promise<ReplyResult>((resolve, reject) => {
        const job: Job = {
          request,
          parts,
          next: 0,
          ids: [],
          done: false,
          finish(value) {
            if (job.done) return;
            job.done = true;
            request.signal?.removeEventListener('abort', onAbort);
            resolve(value);
          },
          fail(error) {
            if (job.done) return;
            job.done = true;
            request.signal?.removeEventListener('abort', onAbort);
            reject(error);
          },
        };
        const onAbort = () => {
          if (job.next === 0) job.finish(result(job, false, DeliveryReason.DEADLINE, 'the reply deadline passed while it was queued'));
        };
        if (request.signal?.aborted) return onAbort();
        request.signal?.addEventListener('abort', onAbort, { once: true });
        state.queue.push(job);
        void pump(channel, state);
      });
    },
    snapshot() {
      const at = now();
      const out: Record<string, ChannelQueueSnapshot> = {};
      for (const [channel, state] of channels) {
        prune(state, at);
        out[channel] = { queued: state.queue.filter((job) => !job.done).length, sentInWindow: state.sent.length, limit: limitOf(channel) };
      }
      return out;
    },
    close() {
      closed = true;
      for (const state of channels.values()) {
        if (state.timer) clearTimeout(state.timer);
        state.wake?.();
        for (const job of state.queue) job.finish(result(job, false, DeliveryReason.CANCELLED, 'egress is shutting down'));
        state.queue = [];
      }
    },
  };
}

/** What egress decided for one envelope. */
export interface EgressOutcome {
  envelope: Envelope;
  /** Set when the step must be recorded as failed (R5/R9): the code for errors[]. */
  failure?: { code: string; message: string };
  result?: ReplyResult;
}

/**
 * Delivers the envelope's reply (if any) to the Twitch channel it came from, threaded under the
 * triggering message, and records the outcome in `envelope.delivery`.
 */
export async function deliverEnvelopeReply(
  envelope: Envelope,
  sender: ReplySender,
  options: { signal?: AbortSignal; now?: () => number } = {},
): Promise<EgressOutcome> {
  const now = options.now ?? Date.now;
  const at = () => new Date(now()).toISOString();
  const channel = channelName(envelope.source.channel);
  const destination = `twitch:#${channel}`;
  const record = (delivery: { delivered: boolean; reason?: string; platformMessageIds?: string[] }): Envelope => ({
    ...envelope,
    delivery: { at: at(), destination, ...delivery },
  });

  if (envelope.source.platform !== 'twitch') {
    return { envelope: { ...envelope, delivery: { delivered: false, at: at(), reason: DeliveryReason.UNSUPPORTED_PLATFORM } } };
  }
  const reply = selectReply(envelope);
  if (!reply) return { envelope: record({ delivered: false, reason: DeliveryReason.NO_REPLY }) };

  const deadlineAt = replyDeadline(envelope);
  const replyTo = envelope.message?.id || (typeof envelope.payload.messageId === 'string' && envelope.payload.messageId) || undefined;
  const result = await sender.deliver({
    channel,
    text: reply.text,
    replyTo,
    deadlineAt,
    signal: options.signal,
    key: `${envelope.id}:${reply.id}`,
  });
  if (result.delivered) {
    return { envelope: record({ delivered: true, platformMessageIds: result.platformMessageIds }), result };
  }
  const delivery = record({
    delivered: false,
    reason: result.reason,
    ...(result.platformMessageIds.length > 0 ? { platformMessageIds: result.platformMessageIds } : {}),
  });
  switch (result.reason) {
    case DeliveryReason.DEADLINE:
      return { envelope: delivery, result, failure: { code: ErrorCode.DEADLINE, message: result.message ?? 'reply deadline passed' } };
    case DeliveryReason.RATE_LIMITED:
      return { envelope: delivery, result, failure: { code: ErrorCode.RATE_LIMITED, message: result.message ?? 'rate limited' } };
    case DeliveryReason.NOT_CONFIGURED:
      return {
        envelope: delivery,
        result,
        failure: { code: ErrorCode.NOT_CONFIGURED, message: result.message ?? 'twitch chat is not configured' },
      };
    case DeliveryReason.SEND_FAILED:
    case DeliveryReason.NOT_CONNECTED:
    case DeliveryReason.CANCELLED:
      return {
        envelope: delivery,
        result,
        failure: { code: ErrorCode.PROVIDER_ERROR, message: result.message ?? 'sending to twitch failed' },
      };
    default:
      return { envelope: delivery, result };
  }
}
