import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createEnvelope, createReply, validateEnvelope, type Envelope } from '../../src/core/index.js';
import {
  DEFAULT_RATE_LIMITS,
  SendError,
  createReplySender,
  deliverEnvelopeReply,
  splitMessage,
  type ChatTransport,
  type ReplyResult,
} from '../../src/platforms/twitch/egress.js';

interface Sent {
  channel: string;
  text: string;
  replyTo?: string;
  at: number;
}

/** A transport that records what would go out to Twitch. */
function recordingTransport(options: { privileged?: (channel: string) => boolean; refuse?: (text: string) => SendError | undefined } = {}) {
  const sent: Sent[] = [];
  let ids = 0;
  const transport: ChatTransport = {
    async send(channel, text, replyTo) {
      const refusal = options.refuse?.(text);
      if (refusal) throw refusal;
      sent.push({ channel, text, replyTo, at: Date.now() });
      return { platformMessageId: `pm-${++ids}` };
    },
    isPrivileged: (channel) => options.privileged?.(channel) ?? false,
  };
  return { sent, transport };
}

/** Largest number of sends inside any window of `windowMs`. */
function maxInWindow(times: number[], windowMs: number): number {
  let max = 0;
  for (let i = 0; i < times.length; i += 1) {
    const inWindow = times.filter((t) => t >= times[i]! && t < times[i]! + windowMs).length;
    max = Math.max(max, inWindow);
  }
  return max;
}

function chatEnvelope(options: { text?: string; ageMs?: number; maxResponseMs?: number; platform?: string } = {}): Envelope {
  const envelope = createEnvelope({
    type: 'external.chat.message.v1',
    timestamp: new Date(Date.now() - (options.ageMs ?? 0)),
    source: { platform: options.platform ?? 'twitch', channel: 'my_channel', channelId: '1337', egressDestination: 'internal.egress.v1' },
    payload: { text: '!hello', messageId: 'msg-1' },
  });
  envelope.message = { id: 'msg-1', text: '!hello' };
  envelope.qos = { maxResponseMs: options.maxResponseMs ?? 30_000 };
  if (options.text !== undefined) envelope.candidates = [createReply('commands', options.text)];
  return envelope;
}

describe('splitMessage', () => {
  it('keeps a short reply as one message', () => {
    expect(splitMessage('  hello   world ')).toEqual(['hello world']);
    expect(splitMessage('   ')).toEqual([]);
  });

  it('splits long replies at word boundaries into parts of at most 500 characters', () => {
    const words = Array.from({ length: 300 }, (_, i) => `word${i}`);
    const parts = splitMessage(words.join(' '));
    expect(parts.length).toBeGreaterThan(1);
    for (const part of parts) {
      expect(part.length).toBeLessThanOrEqual(500);
      expect(part).not.toMatch(/^\s|\s$/);
    }
    // Nothing lost, nothing cut inside a word.
    expect(parts.join(' ').split(' ')).toEqual(words);
    expect(parts[0]!.length).toBeGreaterThan(490);
  });

  it('cuts a single overlong word, never inside a surrogate pair', () => {
    const long = 'a'.repeat(499) + '😀' + 'b'.repeat(10);
    const parts = splitMessage(long);
    expect(parts).toEqual(['a'.repeat(499), '😀' + 'b'.repeat(10)]);
    expect(splitMessage('x'.repeat(1200)).map((part) => part.length)).toEqual([500, 500, 200]);
  });
});

describe('reply sender rate limiting', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date('2025-01-01T00:00:00.000Z') });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends at most 20 messages per 30 s in a channel where the bot has no role', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport, limits: { maxQueue: 100 } });
    const results: Array<Promise<ReplyResult>> = [];
    for (let i = 0; i < 45; i += 1) results.push(sender.deliver({ channel: 'chan', text: `reply ${i}` }));
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(20);
    expect(sender.snapshot().chan).toEqual({ queued: 25, sentInWindow: 20, limit: 20 });
    await vi.advanceTimersByTimeAsync(29_999);
    expect(sent).toHaveLength(20);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toHaveLength(40);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(sent).toHaveLength(45);
    const settled = await Promise.all(results);
    expect(settled.every((result) => result.delivered)).toBe(true);
    expect(sent.map((item) => item.text)).toEqual(Array.from({ length: 45 }, (_, i) => `reply ${i}`));
    expect(
      maxInWindow(
        sent.map((item) => item.at),
        30_000,
      ),
    ).toBe(20);
  });

  it('allows 100 messages per 30 s where the bot is moderator or broadcaster', async () => {
    const { sent, transport } = recordingTransport({ privileged: (channel) => channel === 'modchan' });
    const sender = createReplySender({ transport, limits: { maxQueue: 200 } });
    const results = Array.from({ length: 110 }, (_, i) => sender.deliver({ channel: 'modchan', text: `m${i}` }));
    const plain = Array.from({ length: 25 }, (_, i) => sender.deliver({ channel: 'plainchan', text: `p${i}` }));
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.filter((item) => item.channel === 'modchan')).toHaveLength(100);
    expect(sent.filter((item) => item.channel === 'plainchan')).toHaveLength(20);
    expect(sender.snapshot().modchan!.limit).toBe(100);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(sent.filter((item) => item.channel === 'modchan')).toHaveLength(110);
    expect((await Promise.all([...results, ...plain])).every((result) => result.delivered)).toBe(true);
    expect(
      maxInWindow(
        sent.filter((item) => item.channel === 'modchan').map((item) => item.at),
        30_000,
      ),
    ).toBe(100);
  });

  it('counts every part of a split reply against the limit', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport, limits: { normal: 3, windowMs: 1_000 } });
    const long = Array.from({ length: 200 }, (_, i) => `w${i}`).join(' '); // ~890 chars → 2 parts
    const first = sender.deliver({ channel: 'c', text: long, replyTo: 'parent-1' });
    const second = sender.deliver({ channel: 'c', text: long, replyTo: 'parent-2' });
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(3);
    expect((await first).platformMessageIds).toEqual(['pm-1', 'pm-2']);
    await vi.advanceTimersByTimeAsync(1_000);
    const result = await second;
    expect(result).toMatchObject({ delivered: true, parts: 2, partsSent: 2 });
    expect(sent.map((item) => item.replyTo)).toEqual(['parent-1', 'parent-1', 'parent-2', 'parent-2']);
  });

  it('refuses a reply with RATE_LIMITED when the bounded queue is full, never dropping it silently', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport, limits: { normal: 2, maxQueue: 3 } });
    const first = [sender.deliver({ channel: 'my_channel', text: 'r0' }), sender.deliver({ channel: 'my_channel', text: 'r1' })];
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(2);
    // Three replies wait for tokens; the queue is then full.
    const waiting = ['r2', 'r3', 'r4'].map((text) => sender.deliver({ channel: 'my_channel', text }));
    await vi.advanceTimersByTimeAsync(0);
    expect(sender.snapshot().my_channel).toMatchObject({ queued: 3, sentInWindow: 2 });
    const refused = await sender.deliver({ channel: 'my_channel', text: 'one too many' });
    expect(refused).toMatchObject({ delivered: false, reason: 'RATE_LIMITED', partsSent: 0 });
    expect(refused.message).toContain('queue');

    // Through the envelope path the refusal is recorded on the envelope and fails the stage.
    const envelope = chatEnvelope({ text: 'also refused', maxResponseMs: 120_000 });
    const outcome = await deliverEnvelopeReply(envelope, sender);
    expect(outcome.envelope.delivery).toMatchObject({ delivered: false, reason: 'RATE_LIMITED', destination: 'twitch:#my_channel' });
    expect(outcome.failure?.code).toBe('RATE_LIMITED');
    expect(validateEnvelope(outcome.envelope).ok).toBe(true);

    await vi.advanceTimersByTimeAsync(60_000);
    expect((await Promise.all([...first, ...waiting])).every((result) => result.delivered)).toBe(true);
    expect(sent.map((item) => item.text)).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
  });

  it('uses the defaults Twitch documents', () => {
    expect(DEFAULT_RATE_LIMITS).toMatchObject({ windowMs: 30_000, normal: 20, privileged: 100 });
  });
});

describe('reply deadline (R9)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date('2025-01-01T00:00:00.000Z') });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('does not send a reply whose deadline has passed and records DEADLINE', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport });
    const envelope = chatEnvelope({ text: 'too late', ageMs: 31_000, maxResponseMs: 30_000 });
    const outcome = await deliverEnvelopeReply(envelope, sender);
    expect(sent).toHaveLength(0);
    expect(outcome.envelope.delivery).toMatchObject({ delivered: false, reason: 'DEADLINE' });
    expect(outcome.failure).toMatchObject({ code: 'DEADLINE' });
  });

  it('does not queue a reply the rate limit would push past its deadline', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport, limits: { normal: 1 } });
    await sender.deliver({ channel: 'my_channel', text: 'uses the only token' });
    const envelope = chatEnvelope({ text: 'would wait 30 s', maxResponseMs: 5_000 });
    const outcome = await deliverEnvelopeReply(envelope, sender);
    expect(outcome.envelope.delivery).toMatchObject({ delivered: false, reason: 'DEADLINE' });
    expect(outcome.failure?.code).toBe('DEADLINE');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sent.map((item) => item.text)).toEqual(['uses the only token']);
  });

  it('drops a queued reply when its deadline signal fires before a token is free', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport, limits: { normal: 1 } });
    await sender.deliver({ channel: 'c', text: 'first' });
    const controller = new AbortController();
    const pending = sender.deliver({ channel: 'c', text: 'second', signal: controller.signal });
    await vi.advanceTimersByTimeAsync(10_000);
    controller.abort();
    expect(await pending).toMatchObject({ delivered: false, reason: 'DEADLINE', partsSent: 0 });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sent.map((item) => item.text)).toEqual(['first']);
  });
});

describe('deliverEnvelopeReply', () => {
  it('threads the reply under the triggering message and records the delivery', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport });
    const outcome = await deliverEnvelopeReply(chatEnvelope({ text: 'Hello back!' }), sender);
    expect(sent).toEqual([{ channel: 'my_channel', text: 'Hello back!', replyTo: 'msg-1', at: expect.any(Number) }]);
    expect(outcome.failure).toBeUndefined();
    expect(outcome.envelope.delivery).toEqual({
      delivered: true,
      at: expect.any(String),
      destination: 'twitch:#my_channel',
      platformMessageIds: ['pm-1'],
    });
    expect(validateEnvelope(outcome.envelope).ok).toBe(true);
  });

  it('records UNSUPPORTED_PLATFORM for other platforms and NO_REPLY without a text candidate', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport });
    const discord = await deliverEnvelopeReply(chatEnvelope({ text: 'hi', platform: 'discord' }), sender);
    expect(discord.envelope.delivery).toMatchObject({ delivered: false, reason: 'UNSUPPORTED_PLATFORM' });
    expect(discord.failure).toBeUndefined();
    const silent = await deliverEnvelopeReply(chatEnvelope(), sender);
    expect(silent.envelope.delivery).toMatchObject({ delivered: false, reason: 'NO_REPLY' });
    expect(sent).toHaveLength(0);
  });

  it('records a refusal from Twitch (NOTICE msg_ratelimit) as RATE_LIMITED', async () => {
    const { transport } = recordingTransport({ refuse: () => new SendError('RATE_LIMITED', 'twitch refused the message') });
    const outcome = await deliverEnvelopeReply(chatEnvelope({ text: 'hi' }), createReplySender({ transport }));
    expect(outcome.envelope.delivery).toMatchObject({ delivered: false, reason: 'RATE_LIMITED' });
    expect(outcome.failure?.code).toBe('RATE_LIMITED');
  });

  it('sends nothing when the idempotency claim says the reply already went out', async () => {
    const { sent, transport } = recordingTransport();
    const claimed = new Set<string>();
    const sender = createReplySender({
      transport,
      beforeSend: async (request) => (claimed.has(request.key!) ? false : (claimed.add(request.key!), true)),
    });
    const envelope = chatEnvelope({ text: 'once only' });
    expect((await deliverEnvelopeReply(envelope, sender)).envelope.delivery?.delivered).toBe(true);
    const again = await deliverEnvelopeReply(envelope, sender);
    expect(again.envelope.delivery).toMatchObject({ delivered: false, reason: 'DUPLICATE' });
    expect(sent).toHaveLength(1);
  });

  it('rejects (so the runtime holds and retries) when the idempotency store is down, sending nothing', async () => {
    const { sent, transport } = recordingTransport();
    const sender = createReplySender({ transport, beforeSend: async () => Promise.reject(new Error('store unreachable')) });
    await expect(deliverEnvelopeReply(chatEnvelope({ text: 'hi' }), sender)).rejects.toThrow('store unreachable');
    expect(sent).toHaveLength(0);
  });
});

describe('replies are never run as chat commands', () => {
  it('escapes a leading / or . in every part', async () => {
    const { splitMessage } = await import('../../src/platforms/twitch/egress.js');
    const parts = splitMessage('/ban someone', 500);
    expect(parts[0]).not.toMatch(/^[/.]/);
    expect(parts[0]).toContain('/ban someone');
    const long = splitMessage('a'.repeat(495) + ' .timeout victim 600', 500);
    for (const part of long) expect(part).not.toMatch(/^[/.]/);
  });
});
