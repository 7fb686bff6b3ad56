import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EventType, Topic, validateEnvelope } from '../../src/core/index.js';
import {
  buildSourceStatusEnvelope,
  normalizeChatMessage,
  parseBadgeNames,
  parseEmotes,
  twitchSourceId,
} from '../../src/platforms/twitch/normalize.js';

const seed = JSON.parse(readFileSync(new URL('../fixtures/seed-003-irc-envelope.json', import.meta.url), 'utf8')) as Record<string, any>;

/** Tags as Twitch sends them on a PRIVMSG (after IRCv3 unescaping). */
const tags = new Map<string, string>([
  ['badge-info', 'subscriber/8'],
  ['badges', 'subscriber/6,premium/1'],
  ['color', '#AABBCC'],
  ['display-name', 'CoolViewer'],
  ['emotes', '25:0-4,12-16/1902:6-10'],
  ['first-msg', '0'],
  ['flags', ''],
  ['id', 'b34ccfc7-4977-403a-8a94-33c6bac34fb8'],
  ['mod', '0'],
  ['room-id', '1337'],
  ['subscriber', '1'],
  ['tmi-sent-ts', '1700000000000'],
  ['turbo', '0'],
  ['user-id', '42424242'],
  ['user-type', ''],
]);

describe('twitch chat normalization (seed 003 §3/§13)', () => {
  const receivedAt = new Date('2025-11-21T17:02:00.000Z');
  const envelope = normalizeChatMessage({ channel: '#My_Channel', userLogin: 'coolviewer', text: 'Kappa Keepo Kappa', tags, receivedAt });

  it('produces an envelope that validates against the platform schema', () => {
    const result = validateEnvelope(envelope);
    expect(result.ok, result.ok ? '' : result.error).toBe(true);
  });

  it('has exactly the seed example’s top-level shape', () => {
    for (const key of Object.keys(seed)) expect(envelope).toHaveProperty(key);
    expect(envelope.v).toBe('1');
    expect(envelope.type).toBe(EventType.chatMessage);
    expect(envelope.type).toBe(seed.type);
    expect(envelope.timestamp).toBe('2025-11-21T17:02:00.000Z');
    expect(envelope.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(envelope.correlationId).toBe(envelope.id);
    expect(envelope.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(envelope.routingSlip).toEqual([]);
    expect(envelope.finalizationDestination).toBe(Topic.finalizer);
  });

  it('fills source from the channel and room id, replying on the shared egress topic', () => {
    expect(envelope.source).toEqual({
      platform: 'twitch',
      channel: 'my_channel',
      channelId: '1337',
      egressDestination: 'internal.egress.v1',
    });
  });

  it('fills user from the tags, leaving role to the auth service', () => {
    expect(envelope.user).toEqual({ id: '42424242', name: 'coolviewer', displayName: 'CoolViewer', profileImageUrl: '', role: '' });
  });

  it('carries the seed payload fields: text, message id, badges, mod/sub flags, color, emotes, raw tags', () => {
    expect(Object.keys(envelope.payload).sort()).toEqual(Object.keys(seed.payload).sort());
    expect(envelope.payload).toMatchObject({
      text: 'Kappa Keepo Kappa',
      messageId: 'b34ccfc7-4977-403a-8a94-33c6bac34fb8',
      badges: ['subscriber', 'premium'],
      isMod: false,
      isSubscriber: true,
      color: '#AABBCC',
    });
    expect(envelope.payload.emotes).toEqual([
      {
        id: '25',
        name: 'Kappa',
        positions: [
          { start: 0, end: 4 },
          { start: 12, end: 16 },
        ],
      },
      { id: '1902', name: 'Keepo', positions: [{ start: 6, end: 10 }] },
    ]);
    expect(envelope.payload.raw).toEqual({ tags: Object.fromEntries(tags) });
  });

  it('sets message { id, text } and the default 30 s reply deadline', () => {
    expect(envelope.message).toEqual({ id: 'b34ccfc7-4977-403a-8a94-33c6bac34fb8', text: 'Kappa Keepo Kappa' });
    expect(envelope.qos).toEqual({ maxResponseMs: 30_000 });
  });

  it('records the parent of a threaded chat message', () => {
    const reply = normalizeChatMessage({ channel: 'c', userLogin: 'u', text: '@x yes', tags: { id: 'm2', 'reply-parent-msg-id': 'm1' } });
    expect(reply.message).toEqual({ id: 'm2', text: '@x yes', replyToMessageId: 'm1' });
  });

  it('treats a moderator badge or mod=1 as a moderator, founder as a subscriber', () => {
    const mod = normalizeChatMessage({ channel: 'c', userLogin: 'm', text: 'hi', tags: { badges: 'moderator/1', mod: '0', id: 'a' } });
    expect(mod.payload.isMod).toBe(true);
    const founder = normalizeChatMessage({
      channel: 'c',
      userLogin: 'f',
      text: 'hi',
      tags: { badges: 'founder/0', subscriber: '0', id: 'b' },
    });
    expect(founder.payload.isSubscriber).toBe(true);
  });

  it('marks a /me line (CTCP ACTION) with isAction and keeps its text without the ACTION wrapper', () => {
    const action = normalizeChatMessage({
      channel: '#My_Channel',
      userLogin: 'coolviewer',
      text: 'Kappa Keepo Kappa',
      tags,
      receivedAt,
      action: true,
    });
    const result = validateEnvelope(action);
    expect(result.ok, result.ok ? '' : result.error).toBe(true);
    expect(action.type).toBe(EventType.chatMessage);
    expect(action.payload).toMatchObject({ text: 'Kappa Keepo Kappa', isAction: true });
    expect(action.message?.text).toBe('Kappa Keepo Kappa');
    expect(action.payload.emotes).toEqual(envelope.payload.emotes);
    expect(envelope.payload).not.toHaveProperty('isAction');
  });

  it('still validates when Twitch omits optional tags', () => {
    const bare = normalizeChatMessage({ channel: 'c', userLogin: 'Someone', text: 'héllo 👋', tags: {} });
    expect(validateEnvelope(bare).ok).toBe(true);
    expect(bare.user).toEqual({ id: '', name: 'someone', displayName: 'someone', profileImageUrl: '', role: '' });
    expect(bare.payload).toMatchObject({ messageId: '', badges: [], emotes: [], color: '', isMod: false, isSubscriber: false });
  });

  it('cuts emote names by code points, not UTF-16 units', () => {
    // 👋 is one code point but two UTF-16 units; Twitch's offsets count code points.
    expect(parseEmotes('25:4-8', '👋 a Kappa')).toEqual([{ id: '25', name: 'Kappa', positions: [{ start: 4, end: 8 }] }]);
    expect(parseEmotes('bad', 'text')).toEqual([]);
    expect(parseBadgeNames('vip/1,subscriber/3000')).toEqual(['vip', 'subscriber']);
  });
});

describe('source status envelope (seed 002)', () => {
  it('is a system.source.status envelope with the sources fields and an empty slip', () => {
    const at = new Date('2025-11-21T17:05:00.000Z');
    const envelope = buildSourceStatusEnvelope({
      channel: 'My_Channel',
      channelId: '1337',
      status: 'connected',
      metrics: { messagesIn: 5, messagesOut: 2, errors: 1, reconnects: 1 },
      authStatus: 'valid',
      permissions: { moderator: true, vip: false, broadcaster: false },
      latencyMs: 12,
      lastError: null,
      at,
    });
    expect(validateEnvelope(envelope).ok).toBe(true);
    expect(envelope.type).toBe(EventType.sourceStatus);
    expect(envelope.routingSlip).toEqual([]);
    expect(envelope.payload).toEqual({
      sourceId: 'twitch:my_channel',
      platform: 'twitch',
      displayName: 'my_channel',
      status: 'connected',
      metrics: { messagesIn: 5, messagesOut: 2, errors: 1, reconnects: 1, lastHeartbeat: '2025-11-21T17:05:00.000Z' },
      authStatus: 'valid',
      permissions: { moderator: true, vip: false, broadcaster: false },
      latencyMs: 12,
      lastError: null,
    });
    expect(twitchSourceId('')).toBe('twitch:chat');
  });
});

describe('twitch chat text that a database cannot store', () => {
  it('turns NUL and lone surrogates into U+FFFD in the payload and the message, keeping emote offsets', () => {
    const envelope = normalizeChatMessage({
      channel: '#c',
      userLogin: 'viewer',
      text: 'Kappa \u0000 \uD800 Keepo',
      tags: new Map([['emotes', '25:0-4/1902:10-14']]),
    });
    expect(envelope.payload.text).toBe('Kappa \uFFFD \uFFFD Keepo');
    expect(envelope.message?.text).toBe('Kappa \uFFFD \uFFFD Keepo');
    expect((envelope.payload.emotes as Array<{ name: string }>).map((emote) => emote.name)).toEqual(['Kappa', 'Keepo']);
  });
});
