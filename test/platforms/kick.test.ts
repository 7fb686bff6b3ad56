/**
 * The Kick connector's pure parts: webhook signature and age checks, normalization of Kick's documented
 * payloads, PKCE, reply splitting and pacing (with a fake clock), and the OAuth state.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { validateEnvelope, createReply, createEnvelope, type Envelope } from '../../src/core/index.js';
import {
  KickApiError,
  createKickReplySender,
  createPkcePair,
  deliverKickReply,
  kickAuthorizeUrl,
  normalizeKickDelivery,
  parseKickPublicKey,
  pkceChallenge,
  splitKickMessage,
  verifyKickWebhook,
  type KickChatTransport,
} from '../../src/platforms/kick/index.js';
import { kickPkceVerifier, signKickState, verifyKickState } from '../../src/services/oauth-flow/kick.js';
import { kickSetupHint } from '../../src/services/kick/index.js';
import { KICK_BROADCASTER as BROADCASTER, kickViewer } from '../support/kick.js';

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PEM = publicKey.export({ type: 'spki', format: 'pem' }).toString();
const key = parseKickPublicKey(PEM);

function signed(body: string, options: { messageId?: string; timestamp?: string; type?: string } = {}) {
  const messageId = options.messageId ?? '01JTESTMESSAGE';
  const timestamp = options.timestamp ?? new Date().toISOString();
  const signature = sign('sha256', Buffer.from(`${messageId}.${timestamp}.${body}`), privateKey).toString('base64');
  return {
    'kick-event-message-id': messageId,
    'kick-event-message-timestamp': timestamp,
    'kick-event-type': options.type ?? 'chat.message.sent',
    'kick-event-version': '1',
    'kick-event-subscription-id': 'sub-1',
    'kick-event-signature': signature,
  } as Record<string, string>;
}

const VIEWER = kickViewer({
  username_color: '#FF5733',
  badges: [
    { text: 'Moderator', type: 'moderator' },
    { text: 'Subscriber', type: 'subscriber', count: 3 },
  ],
});

describe('Kick webhook verification', () => {
  const body = JSON.stringify({ message_id: 'm1', content: 'hi' });

  it('accepts a delivery signed with the key over id, timestamp and raw body', () => {
    const verdict = verifyKickWebhook({ key, headers: signed(body), rawBody: Buffer.from(body) });
    expect(verdict).toMatchObject({
      ok: true,
      headers: { messageId: '01JTESTMESSAGE', eventType: 'chat.message.sent', eventVersion: '1', subscriptionId: 'sub-1' },
    });
  });

  it('refuses a changed body with 403', () => {
    const verdict = verifyKickWebhook({ key, headers: signed(body), rawBody: Buffer.from(body.replace('hi', 'ho')) });
    expect(verdict).toMatchObject({ ok: false, status: 403, code: 'FORBIDDEN' });
  });

  it('refuses a delivery signed by another key with 403', () => {
    const other = parseKickPublicKey(
      generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    );
    expect(verifyKickWebhook({ key: other, headers: signed(body), rawBody: Buffer.from(body) })).toMatchObject({ ok: false, status: 403 });
  });

  it('refuses a delivery without a signature with 401 and one without its id with 400', () => {
    const headers = signed(body);
    const { 'kick-event-signature': _signature, ...unsigned } = headers;
    expect(verifyKickWebhook({ key, headers: unsigned, rawBody: Buffer.from(body) })).toMatchObject({ ok: false, status: 401 });
    const { 'kick-event-message-id': _id, ...noId } = headers;
    expect(verifyKickWebhook({ key, headers: noId, rawBody: Buffer.from(body) })).toMatchObject({
      ok: false,
      status: 400,
      message: expect.stringContaining('Kick-Event-Message-Id'),
    });
  });

  it('refuses a correctly signed delivery older than the maximum age as stale', () => {
    const timestamp = new Date(Date.now() - 6 * 60_000).toISOString();
    const verdict = verifyKickWebhook({ key, headers: signed(body, { timestamp }), rawBody: Buffer.from(body) });
    expect(verdict).toMatchObject({ ok: false, status: 403, message: expect.stringContaining('stale') });
    expect(verifyKickWebhook({ key, headers: signed(body, { timestamp }), rawBody: Buffer.from(body), maxAgeMs: 10 * 60_000 }).ok).toBe(
      true,
    );
  });

  it('reads a PEM given with escaped newlines, as env files hold it', () => {
    expect(() => parseKickPublicKey(PEM.replace(/\n/g, '\\n'))).not.toThrow();
    expect(() => parseKickPublicKey('not a key')).toThrow(/not a valid PEM/);
  });
});

describe('Kick normalization', () => {
  const delivery = (eventType: string) => ({
    eventType,
    eventVersion: '1',
    messageId: `msg-${eventType}`,
    receivedAt: new Date('2025-01-14T16:08:08Z'),
    sentAt: new Date('2025-01-14T16:08:07Z'),
    egressDestination: 'internal.egress.i1.v1',
  });

  it('turns chat.message.sent into a valid chat envelope of platform kick, threaded and with roles from badges', () => {
    const payload = {
      message_id: 'km-1',
      replies_to: { message_id: 'km-0', content: 'parent', sender: BROADCASTER },
      broadcaster: BROADCASTER,
      sender: VIEWER,
      content: 'Hello\u0000 [emote:37226:KEKW]',
      emotes: [{ emote_id: '37226', positions: [{ s: 6, e: 23 }] }],
      created_at: '2025-01-14T16:08:06Z',
    };
    const { envelopes, channel, occurredAt } = normalizeKickDelivery(payload, delivery('chat.message.sent'));
    const [envelope] = envelopes as [Envelope];
    expect(validateEnvelope(envelope).ok).toBe(true);
    expect(channel).toBe('streamer');
    expect(occurredAt?.toISOString()).toBe('2025-01-14T16:08:06.000Z');
    expect(envelope).toMatchObject({
      type: 'external.chat.message.v1',
      source: { platform: 'kick', channel: 'streamer', channelId: '1001', egressDestination: 'internal.egress.i1.v1' },
      user: { id: '3003', name: 'viewer_vic', displayName: 'Viewer_Vic' },
      message: { id: 'km-1', text: 'Hello\ufffd [emote:37226:KEKW]', replyToMessageId: 'km-0' },
      payload: { messageId: 'km-1', badges: ['moderator', 'subscriber'], isMod: true, isSubscriber: true, isBroadcaster: false },
    });
  });

  it("gives follows and subscriptions the event kinds and payload fields of Twitch, keeping Kick's own name", () => {
    const follow = normalizeKickDelivery({ broadcaster: BROADCASTER, follower: VIEWER }, delivery('channel.followed')).envelopes[0]!;
    expect(follow).toMatchObject({
      type: 'kick.event.v1',
      user: { id: '3003', displayName: 'Viewer_Vic' },
      externalEvent: { kind: 'channel.follow', source: 'kick.webhook', id: 'msg-channel.followed' },
      payload: { kickEventType: 'channel.followed', user: { id: '3003', login: 'viewer_vic', name: 'Viewer_Vic' } },
    });
    const fresh = normalizeKickDelivery(
      { broadcaster: BROADCASTER, subscriber: VIEWER, duration: 1, created_at: '2025-01-14T16:08:06Z' },
      delivery('channel.subscription.new'),
    ).envelopes[0]!;
    expect(fresh).toMatchObject({
      externalEvent: { kind: 'channel.subscribe', createdAt: '2025-01-14T16:08:06.000Z' },
      payload: { isGift: false, tierLevel: 1, durationMonths: 1 },
    });
    const renewal = normalizeKickDelivery(
      { broadcaster: BROADCASTER, subscriber: VIEWER, duration: 7 },
      delivery('channel.subscription.renewal'),
    ).envelopes[0]!;
    expect(renewal).toMatchObject({ externalEvent: { kind: 'channel.subscription.message' }, payload: { cumulativeMonths: 7 } });
    const gifts = normalizeKickDelivery(
      {
        broadcaster: BROADCASTER,
        gifter: { is_anonymous: true, user_id: null, username: null },
        giftees: [VIEWER, { ...VIEWER, user_id: 3004, username: 'Other', channel_slug: 'other' }],
      },
      delivery('channel.subscription.gifts'),
    ).envelopes[0]!;
    expect(gifts).toMatchObject({
      externalEvent: { kind: 'channel.subscription.gift' },
      user: { id: 'anonymous' },
      payload: { isAnonymous: true, total: 2, user: null },
    });
    for (const envelope of [follow, fresh, renewal, gifts]) expect(validateEnvelope(envelope).ok).toBe(true);
  });

  it('turns livestream.status.updated into the event and a stream status for the kick:<slug> source', () => {
    const live = normalizeKickDelivery(
      { broadcaster: BROADCASTER, is_live: true, title: 'Speedruns', started_at: '2025-01-01T11:00:00+11:00', ended_at: null },
      delivery('livestream.status.updated'),
    );
    expect(live.envelopes.map((envelope) => envelope.type)).toEqual(['kick.event.v1', 'system.stream.online']);
    expect(live.envelopes[1]!.payload).toMatchObject({
      sourceId: 'kick:streamer',
      platform: 'kick',
      streamStatus: 'online',
      title: 'Speedruns',
      startedAt: '2025-01-01T11:00:00+11:00',
    });
    expect(live.occurredAt?.toISOString()).toBe('2025-01-01T00:00:00.000Z');
    const ended = normalizeKickDelivery(
      {
        broadcaster: BROADCASTER,
        is_live: false,
        title: 'Speedruns',
        started_at: '2025-01-01T11:00:00+11:00',
        ended_at: '2025-01-01T15:00:00+11:00',
      },
      delivery('livestream.status.updated'),
    );
    expect(ended.envelopes[1]).toMatchObject({
      type: 'system.stream.offline',
      payload: { streamStatus: 'offline', sourceId: 'kick:streamer' },
    });
  });
});

describe('Kick OAuth pieces', () => {
  it('computes the S256 challenge of RFC 7636 appendix B', () => {
    expect(pkceChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
    expect(createPkcePair().verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('builds the authorize URL with the challenge and S256, never the verifier', () => {
    const pair = createPkcePair();
    const url = new URL(
      kickAuthorizeUrl({
        authUrl: 'https://id.example/',
        clientId: 'cid',
        redirectUri: 'http://localhost/cb',
        scopes: ['chat:write', 'user:read'],
        state: 's',
        challenge: pair.challenge,
      }),
    );
    expect(url.origin + url.pathname).toBe('https://id.example/oauth/authorize');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      response_type: 'code',
      client_id: 'cid',
      redirect_uri: 'http://localhost/cb',
      scope: 'chat:write user:read',
      state: 's',
      code_challenge: pair.challenge,
      code_challenge_method: 'S256',
    });
    expect(url.toString()).not.toContain(pair.verifier);
  });

  it('signs the state for one identity and refuses a forged, expired or Twitch-made one', () => {
    const { state, nonce } = signKickState('secret', 'broadcaster', 'binding');
    expect(verifyKickState('secret', state)).toEqual({ ok: true, role: 'broadcaster', nonce, binding: 'binding' });
    expect(verifyKickState('other', state)).toMatchObject({ ok: false, reason: expect.stringContaining('signature') });
    expect(verifyKickState('secret', signKickState('secret', 'bot', 'b', Date.now() - 20 * 60_000).state)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('expired'),
    });
    const [body] = state.split('.');
    expect(verifyKickState('secret', `${body}.AAAA`).ok).toBe(false);
    expect(kickPkceVerifier('secret', nonce)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(kickPkceVerifier('secret', nonce)).not.toBe(kickPkceVerifier('secret', `${nonce}x`));
  });

  it('says what to set when Kick is not configured', () => {
    expect(kickSetupHint({ KICK_CHANNELS: [], KICK_CLIENT_ID: undefined }, false)).toMatch(
      /KICK_CHANNELS.*\/oauth\/kick\/start.*KICK_CLIENT_ID/,
    );
    expect(kickSetupHint({ KICK_CHANNELS: ['streamer'], KICK_CLIENT_ID: 'cid' }, true)).toBeUndefined();
  });
});

describe('Kick egress', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('splits long replies at 500 characters on word boundaries', () => {
    const words = Array.from({ length: 200 }, (_, index) => `word${index}`).join(' ');
    const chunks = splitKickMessage(words);
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.every((chunk) => chunk.length <= 500)).toBe(true);
    expect(chunks.join(' ')).toBe(words);
    expect(splitKickMessage('x'.repeat(1001)).map((chunk) => chunk.length)).toEqual([500, 500, 1]);
  });

  function replyEnvelope(text: string): Envelope {
    const envelope = createEnvelope({
      type: 'external.chat.message.v1',
      source: { platform: 'kick', channel: 'streamer', channelId: '1001' },
      extra: { message: { id: 'km-9', text: '!ping' } },
    });
    envelope.candidates = [createReply('commands', text)];
    return envelope;
  }

  it('threads the first part of a reply to the message and records the delivery', async () => {
    const sent: Array<Parameters<KickChatTransport['send']>[0]> = [];
    const transport: KickChatTransport = {
      send: async (message) => {
        sent.push(message);
        return { messageId: `out-${sent.length}` };
      },
    };
    const sender = createKickReplySender({ transport });
    const outcome = await deliverKickReply(replyEnvelope(`${'a'.repeat(400)} ${'b'.repeat(400)}`), sender);
    expect(sent.map((message) => message.replyToMessageId)).toEqual(['km-9', undefined]);
    expect(sent.every((message) => message.broadcasterUserId === 1001)).toBe(true);
    expect(outcome.envelope.delivery).toMatchObject({
      delivered: true,
      destination: 'kick:streamer',
      platformMessageIds: ['out-1', 'out-2'],
    });
    expect(outcome.failure).toBeUndefined();
  });

  it('waits out a 429 for its Retry-After and sends the same message again', async () => {
    vi.useFakeTimers();
    let calls = 0;
    const sender = createKickReplySender({
      transport: {
        send: async () => {
          calls += 1;
          if (calls === 1) throw new KickApiError(429, 'Too Many Requests', 2_000);
          return { messageId: 'out-ok' };
        },
      },
    });
    const pending = sender.deliver({ channel: 'streamer', broadcasterUserId: 1001, text: 'pong' });
    await vi.advanceTimersByTimeAsync(1_999);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await pending).toEqual({ delivered: true, platformMessageIds: ['out-ok'] });
    expect(calls).toBe(2);
  });

  it('keeps to the window per channel and fails a reply the window would push past its deadline', async () => {
    vi.useFakeTimers();
    const sender = createKickReplySender({
      transport: { send: async () => ({ messageId: 'x' }) },
      limits: { windowMs: 30_000, messages: 2 },
    });
    await sender.deliver({ channel: 'streamer', broadcasterUserId: 1001, text: 'one' });
    await sender.deliver({ channel: 'streamer', broadcasterUserId: 1001, text: 'two' });
    const late = await sender.deliver({ channel: 'streamer', broadcasterUserId: 1001, text: 'three', deadlineAt: Date.now() + 5_000 });
    expect(late).toMatchObject({ delivered: false, reason: 'DEADLINE' });
    const other = await sender.deliver({ channel: 'elsewhere', broadcasterUserId: 1002, text: 'other channel' });
    expect(other.delivered).toBe(true);
  });

  it('records NOT_CONFIGURED when Kick chat is not set up, and a duplicate key is not sent twice', async () => {
    const outcome = await deliverKickReply(replyEnvelope('pong'), undefined, { notConfigured: 'set KICK_CHANNELS' });
    expect(outcome.failure).toEqual({ code: 'NOT_CONFIGURED', message: 'set KICK_CHANNELS' });
    const claimed = new Set<string>();
    let sends = 0;
    const transport: KickChatTransport = {
      send: async () => {
        sends += 1;
        return { messageId: 'x' };
      },
    };
    const beforeSend = async (key: string) => {
      if (claimed.has(key)) return false;
      claimed.add(key);
      return true;
    };
    const sender = createKickReplySender({ transport, beforeSend });
    const envelope = replyEnvelope('pong');
    await deliverKickReply(envelope, sender);
    const again = await deliverKickReply(envelope, sender);
    expect(sends).toBe(1);
    expect(again.envelope.delivery).toMatchObject({ delivered: false, reason: 'DUPLICATE' });
  });
});
