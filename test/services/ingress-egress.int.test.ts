/**
 * ingress-egress against a fake Twitch chat server (test/fakes/twitch-irc.ts) with the real Twurple
 * ChatClient, a memory bus, and the embedded PGlite store.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { createReply, instanceEgressTopic, validateEnvelope, type Envelope } from '../../src/core/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import { safeAuthErrorMessage } from '../../src/platforms/twitch/auth.js';
import { reconnectDelayMs } from '../../src/platforms/twitch/chat.js';
import service from '../../src/services/ingress-egress/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startFakeTwitchIrc, type FakeTwitchIrc } from '../fakes/twitch-irc.js';
import { collect, readyz, startTestHost } from '../support/harness.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'secret-chat-token-abc123';
const STORE_TOKEN = 'stored-oauth-token-xyz789';
const CHANNEL = 'mychan';
const INSTANCE = 'ie-test-1';

const encoder = new TextEncoder();

async function debug(host: Host): Promise<{ text: string; body: any }> {
  const response = await host.app.inject({ method: 'GET', url: '/_debug/twitch' });
  expect(response.statusCode).toBe(200);
  return { text: response.body, body: response.json() };
}

async function publish(bus: MemoryBus, topic: string, envelope: Envelope): Promise<void> {
  await bus.publish(topic, encoder.encode(JSON.stringify(envelope)));
}

let fake: FakeTwitchIrc;
let store: Store;

beforeAll(async () => {
  fake = await startFakeTwitchIrc({ acceptTokens: [TOKEN, STORE_TOKEN], userStates: { modchan: { badges: 'moderator/1' } } });
  // Twurple validates chat tokens against id.twitch.tv; this sends /auth/* to the fake instead.
  process.env.TWURPLE_MOCK_API_PORT = String(fake.port);
  store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  await store.init();
});

afterAll(async () => {
  await fake?.stop();
  await store?.close();
  delete process.env.TWURPLE_MOCK_API_PORT;
});

function chatEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    INSTANCE_ID: INSTANCE,
    TWITCH_BOT_USERNAME: 'bitbrat_bot',
    TWITCH_CHANNELS: `${CHANNEL},modchan`,
    TWITCH_IRC_URL: fake.url,
    TWITCH_ACCESS_TOKEN: TOKEN,
    IRC_RECONNECT_INITIAL_MS: '150',
    IRC_RECONNECT_MAX_MS: '600',
    SOURCE_HEARTBEAT_MS: '200',
    ...extra,
  };
}

describe('ingress-egress with a configured Twitch chat connection', () => {
  let bus: MemoryBus;
  let host: Host;
  let observed: Awaited<ReturnType<typeof collect>>;
  const linesBefore = { count: 0 };
  /** The host's log, one JSON line each: the connector logs every reconnect it schedules with its delay. */
  const logLines: string[] = [];

  beforeAll(async () => {
    linesBefore.count = fake.lines.length;
    bus = createMemoryBus();
    observed = await collect(bus, ['internal.ingress.v1', 'internal.finalizer.v1', 'internal.deadletter.v1']);
    host = await startTestHost({
      services: [service],
      bus,
      env: chatEnv({ LOG_LEVEL: 'info' }),
      architecture: loadArchitecture(),
      extra: { store, logDestination: { write: (line: string) => void logLines.push(line) } },
    });
    await waitFor(async () => (await readyz(host)).status === 200, { timeoutMs: 15_000, message: 'readyz 200 after joining' });
  });

  afterAll(async () => {
    await host?.stop();
    await bus?.close();
    await store.deleteToken('twitch:bot');
  });

  it('seeds the store from TWITCH_ACCESS_TOKEN once, encrypted, so refreshed tokens live in one place', async () => {
    const stored = await store.getToken('twitch:bot');
    expect(stored?.accessToken).toBe(TOKEN);
    expect(stored?.scopes[0]).toMatch(/^seed:/);
  });

  it('completes the IRC handshake with the real client and joins the configured channels', async () => {
    // The first connection's lines: the reconnect tests, whenever they run, open others.
    const since = fake.lines.slice(linesBefore.count);
    const lines = since.filter((entry) => entry.connection === since[0]!.connection).map((entry) => entry.line);
    expect(lines[0]).toBe('CAP LS 302');
    expect(lines).toContain('CAP REQ :twitch.tv/tags twitch.tv/commands');
    expect(lines).toContain('CAP END');
    expect(lines).toContain(`PASS oauth:${TOKEN}`);
    expect(lines).toContain('NICK bitbrat_bot');
    expect(lines.filter((line) => line.startsWith('JOIN')).sort()).toEqual(['JOIN #modchan', `JOIN #${CHANNEL}`]);
    expect(fake.joinedClients(CHANNEL)).toBe(1);

    const { body } = await debug(host);
    expect(body).toMatchObject({
      status: 'connected',
      configured: true,
      authStatus: 'valid',
      authSource: 'store',
      botUsername: 'bitbrat_bot',
    });
    expect(body.joinedChannels.sort()).toEqual(['modchan', CHANNEL]);
    const ready = await readyz(host);
    expect(ready.body.components['ingress-egress.twitch']).toMatchObject({ ready: true, configured: true });
  });

  it('reads the bot’s permissions from USERSTATE and raises the reply limit where it moderates', async () => {
    const { body } = await debug(host);
    expect(body.permissions.modchan).toEqual({ moderator: true, vip: false, broadcaster: false });
    expect(body.permissions[CHANNEL]).toEqual({ moderator: false, vip: false, broadcaster: false });
    expect(body.egress.limits).toMatchObject({ normal: 20, privileged: 100, windowMs: 30_000 });
  });

  it('turns a chat message into a valid external.chat.message.v1 envelope on internal.ingress.v1', async () => {
    const id = fake.sendChat({
      channel: CHANNEL,
      user: 'coolviewer',
      text: 'Kappa hello bot',
      tags: {
        badges: 'subscriber/6',
        'badge-info': 'subscriber/8',
        subscriber: '1',
        color: '#AABBCC',
        'display-name': 'CoolViewer',
        emotes: '25:0-4',
        'user-id': '4242',
      },
    });
    const envelope = (await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id)) as Envelope;
    const validation = validateEnvelope(envelope);
    expect(validation.ok, validation.ok ? '' : validation.error).toBe(true);
    expect(envelope).toMatchObject({
      type: 'external.chat.message.v1',
      source: { platform: 'twitch', channel: CHANNEL, channelId: fake.roomId(CHANNEL), egressDestination: 'internal.egress.v1' },
      user: { id: '4242', name: 'coolviewer', displayName: 'CoolViewer', profileImageUrl: '', role: '' },
      routingSlip: [],
      finalizationDestination: 'internal.finalizer.v1',
      message: { id, text: 'Kappa hello bot' },
      qos: { maxResponseMs: 30_000 },
      payload: {
        text: 'Kappa hello bot',
        messageId: id,
        badges: ['subscriber'],
        isMod: false,
        isSubscriber: true,
        color: '#AABBCC',
        emotes: [{ id: '25', name: 'Kappa', positions: [{ start: 0, end: 4 }] }],
      },
    });
    expect((envelope.payload.raw as any).tags['badge-info']).toBe('subscriber/8');
    const { body } = await debug(host);
    expect(body.perChannel[CHANNEL].messagesIn).toBeGreaterThanOrEqual(1);
  });

  it('ingests /me lines (CTCP ACTION) as chat messages marked isAction, with the text Twitch shows', async () => {
    const id = fake.sendChat({
      channel: CHANNEL,
      user: 'actor',
      text: '\u0001ACTION waves Kappa\u0001',
      tags: { emotes: '25:6-10', 'user-id': '5151' },
    });
    const envelope = (await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id)) as Envelope;
    const validation = validateEnvelope(envelope);
    expect(validation.ok, validation.ok ? '' : validation.error).toBe(true);
    expect(envelope).toMatchObject({
      type: 'external.chat.message.v1',
      user: { id: '5151', name: 'actor' },
      message: { id, text: 'waves Kappa' },
      payload: { text: 'waves Kappa', isAction: true, emotes: [{ id: '25', name: 'Kappa', positions: [{ start: 6, end: 10 }] }] },
    });
  });

  it('delivers a reply from internal.egress.v1 as a threaded PRIVMSG, then finalizes with delivery.delivered', async () => {
    const id = fake.sendChat({ channel: CHANNEL, user: 'asker', text: '!hello' });
    const incoming = (await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id)) as Envelope;
    const before = fake.messagesTo(CHANNEL).length;
    await publish(bus, 'internal.egress.v1', { ...incoming, candidates: [createReply('commands', 'Hello back, asker!')] });

    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === incoming.id)) as Envelope;
    const sent = fake.messagesTo(CHANNEL).slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ text: 'Hello back, asker!', tags: { 'reply-parent-msg-id': id }, accepted: true });
    expect(final.delivery).toMatchObject({ delivered: true, destination: `twitch:#${CHANNEL}`, platformMessageIds: [sent[0]!.id] });
    expect(final.outcome).toBe('completed');
    expect(validateEnvelope(final).ok).toBe(true);
    expect((await debug(host)).body.perChannel[CHANNEL].messagesOut).toBeGreaterThanOrEqual(1);
  });

  it('splits a long reply into several threaded messages of at most 500 characters', async () => {
    const id = fake.sendChat({ channel: CHANNEL, user: 'asker', text: '!story' });
    const incoming = (await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id)) as Envelope;
    const words = Array.from({ length: 220 }, (_, i) => `word${i}`);
    const before = fake.messagesTo(CHANNEL).length;
    await publish(bus, 'internal.egress.v1', { ...incoming, candidates: [createReply('llm-bot', words.join(' '))] });

    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === incoming.id)) as Envelope;
    const sent = fake.messagesTo(CHANNEL).slice(before);
    expect(sent.length).toBeGreaterThanOrEqual(3);
    for (const message of sent) {
      expect(message.text.length).toBeLessThanOrEqual(500);
      expect(message.tags['reply-parent-msg-id']).toBe(id);
    }
    expect(sent.map((message) => message.text).join(' ')).toBe(words.join(' '));
    expect(final.delivery).toMatchObject({ delivered: true, platformMessageIds: sent.map((message) => message.id) });
  });

  it('also delivers replies sent to this instance’s own egress topic', async () => {
    const id = fake.sendChat({ channel: 'modchan', user: 'asker', text: '!mod' });
    const incoming = (await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id)) as Envelope;
    await publish(bus, instanceEgressTopic(INSTANCE), { ...incoming, candidates: [createReply('commands', 'per-instance reply')] });
    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === incoming.id)) as Envelope;
    expect(final.delivery?.delivered).toBe(true);
    expect(fake.messagesTo('modchan').at(-1)).toMatchObject({ text: 'per-instance reply', tags: { 'reply-parent-msg-id': id } });
  });

  it('does not send a reply past its deadline and records the failed step with DEADLINE', async () => {
    const id = fake.sendChat({ channel: CHANNEL, user: 'asker', text: '!late' });
    const incoming = (await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id)) as Envelope;
    const before = fake.messagesTo(CHANNEL).length;
    const stale = {
      ...incoming,
      timestamp: new Date(Date.now() - 60_000).toISOString(),
      candidates: [createReply('llm-bot', 'too late to matter')],
    };
    await publish(bus, 'internal.egress.v1', stale);
    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === incoming.id)) as Envelope;
    expect(final.outcome).toBe('failed');
    expect(final.errors?.map((error) => error.code)).toContain('DEADLINE');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(fake.messagesTo(CHANNEL).slice(before)).toEqual([]);
  });

  it('records a reply Twitch refuses with NOTICE msg_ratelimit as not delivered (RATE_LIMITED)', async () => {
    const id = fake.sendChat({ channel: CHANNEL, user: 'asker', text: '!spam' });
    const incoming = (await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id)) as Envelope;
    fake.setRateLimit({ max: 0, windowMs: 30_000 });
    try {
      await publish(bus, 'internal.egress.v1', { ...incoming, candidates: [createReply('commands', 'refused by twitch')] });
      const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === incoming.id)) as Envelope;
      expect(fake.messagesTo(CHANNEL).at(-1)).toMatchObject({ text: 'refused by twitch', accepted: false });
      expect(final.delivery).toMatchObject({ delivered: false, reason: 'RATE_LIMITED' });
      expect(final.outcome).toBe('failed');
      expect(final.errors?.[0]).toMatchObject({ code: 'RATE_LIMITED' });
      expect((await debug(host)).body.lastError).toMatchObject({ code: 'RATE_LIMITED' });
    } finally {
      fake.setRateLimit(undefined);
    }
  });

  it('records replies for other platforms as not delivered (UNSUPPORTED_PLATFORM)', async () => {
    const envelope: Envelope = {
      v: '1',
      id: 'discord-envelope-1',
      correlationId: 'discord-envelope-1',
      traceId: 'a'.repeat(32),
      timestamp: new Date().toISOString(),
      type: 'external.chat.message.v1',
      source: { platform: 'discord', channel: 'general', channelId: '1', egressDestination: 'internal.egress.v1' },
      user: { id: 'u', name: 'u', displayName: 'u', profileImageUrl: '', role: '' },
      routingSlip: [],
      finalizationDestination: 'internal.finalizer.v1',
      payload: {},
      candidates: [createReply('commands', 'hi discord')],
    };
    await publish(bus, 'internal.egress.v1', envelope);
    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === envelope.id)) as Envelope;
    expect(final.delivery).toMatchObject({ delivered: false, reason: 'UNSUPPORTED_PLATFORM' });
  });

  it('publishes system.source.status heartbeats per channel every SOURCE_HEARTBEAT_MS', async () => {
    const since = Date.now();
    const isStatus = (value: any) =>
      value.type === 'system.source.status' && value.payload.sourceId === `twitch:${CHANNEL}` && Date.parse(value.timestamp) >= since;
    await waitFor(() => observed.envelopes('internal.ingress.v1').filter(isStatus).length >= 3, {
      timeoutMs: 5_000,
      message: 'three heartbeats',
    });
    const beats = observed.envelopes('internal.ingress.v1').filter(isStatus);
    for (const beat of beats) expect(validateEnvelope(beat).ok).toBe(true);
    const last = beats.at(-1)!;
    expect(last.routingSlip).toEqual([]);
    expect(last.source).toMatchObject({ platform: 'twitch', channel: CHANNEL, channelId: fake.roomId(CHANNEL) });
    expect(last.payload).toMatchObject({
      sourceId: `twitch:${CHANNEL}`,
      platform: 'twitch',
      displayName: CHANNEL,
      status: 'connected',
      authStatus: 'valid',
      permissions: { moderator: false, vip: false, broadcaster: false },
      metrics: {
        messagesIn: expect.any(Number),
        messagesOut: expect.any(Number),
        errors: expect.any(Number),
        reconnects: expect.any(Number),
        lastHeartbeat: expect.any(String),
      },
    });
    expect(typeof last.payload.latencyMs).toBe('number');
    const gaps = beats.slice(1).map((beat, i) => Date.parse(beat.timestamp) - Date.parse(beats[i]!.timestamp));
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(150);
    expect(
      observed
        .envelopes('internal.ingress.v1')
        .some((value) => value.type === 'system.source.status' && value.payload.sourceId === 'twitch:modchan'),
    ).toBe(true);
  });

  it('survives malformed IRC input: stays connected and keeps turning the well-formed lines into valid envelopes', async () => {
    const connectionsBefore = fake.connections;
    const reconnectsBefore = (await debug(host)).body.counters.reconnects;
    const ingressBefore = observed.envelopes('internal.ingress.v1').length;
    const prefix = (login: string) => `:${login}!${login}@${login}.tmi.twitch.tv`;
    const emojiId = 'malformed-emoji-1';
    const emojiText = 'Kappa 🎉 héllo 世界 Kappa';
    fake.sendLines(CHANNEL, [
      // Plain garbage, a bare prefix, a lone tag block, control characters and an unknown command.
      'this is not irc at all',
      ':',
      '@;;;=',
      '@badges=broadcaster/1 :nobody PRIVMSG',
      '\u0001\u0000 ::: @@@',
      `${prefix('x')} FROBNICATE #${CHANNEL} :what`,
      // A PRIVMSG without any tags.
      `${prefix('notags')} PRIVMSG #${CHANNEL} :a message without tags`,
      // Broken tag escaping: a dangling backslash, unknown escapes, a tag without a value, a stray `=`.
      `@badges=;color=#FF0000;display-name=Broken\\;emotes=;id=malformed-escape-1;user-id=5151\\q\\;novalue;=orphan :broken!broken@broken.tmi.twitch.tv PRIVMSG #${CHANNEL} :escape\\s trouble`,
      // Emotes whose positions are garbage or out of range.
      fake.chatLine({
        channel: CHANNEL,
        user: 'emotebad',
        text: 'Kappa oops',
        tags: { id: 'malformed-emotes-1', emotes: '25:a-b,100-104/x:/:0-4', 'user-id': '5252' },
      }).line,
      // Unicode and emoji with emote positions counted in code points.
      fake.chatLine({
        channel: CHANNEL,
        user: 'emojifan',
        text: emojiText,
        tags: { id: emojiId, emotes: '25:0-4,17-21', 'user-id': '5353', 'display-name': 'ÉmojiFan' },
      }).line,
    ]);
    // Well-formed chat after the garbage still arrives, in order and valid.
    const after = [0, 1, 2].map((i) => fake.sendChat({ channel: CHANNEL, user: `aftergarbage${i}`, text: `still here ${i}` }));
    const last = (await observed
      .waitFor('internal.ingress.v1', (value) => value.payload?.messageId === after[2])
      .catch(async (error: Error) => {
        const seen = observed
          .envelopes('internal.ingress.v1')
          .slice(ingressBefore)
          .map((value) => value.payload?.messageId ?? value.type);
        throw new Error(`${error.message}; connector status ${(await debug(host)).body.status}; ingress since: ${JSON.stringify(seen)}`);
      })) as Envelope;

    const chats = observed
      .envelopes('internal.ingress.v1')
      .slice(ingressBefore)
      .filter((value) => value.type === 'external.chat.message.v1');
    for (const envelope of chats) {
      const validation = validateEnvelope(envelope);
      expect(validation.ok, validation.ok ? '' : `${envelope.message?.text}: ${validation.error}`).toBe(true);
    }
    const ids = chats.map((envelope) => envelope.payload.messageId);
    expect(ids.slice(-3)).toEqual(after);
    expect(last).toMatchObject({ message: { text: 'still here 2' }, user: { name: 'aftergarbage2' } });

    const emoji = chats.find((envelope) => envelope.payload.messageId === emojiId)!;
    expect(emoji).toMatchObject({
      message: { id: emojiId, text: emojiText },
      user: { id: '5353', name: 'emojifan', displayName: 'ÉmojiFan' },
      payload: {
        text: emojiText,
        emotes: [
          {
            id: '25',
            name: 'Kappa',
            positions: [
              { start: 0, end: 4 },
              { start: 17, end: 21 },
            ],
          },
        ],
      },
    });
    // A line with broken tag escaping still comes through with its text as sent.
    expect(chats.find((envelope) => envelope.payload.messageId === 'malformed-escape-1')).toMatchObject({
      user: { name: 'broken' },
      message: { text: 'escape\\s trouble' },
    });
    // Unparsable emote positions (`a-b`, `x:`) are dropped; the message itself is kept as sent.
    const badEmotes = chats.find((envelope) => envelope.payload.messageId === 'malformed-emotes-1')!;
    expect(badEmotes.message).toMatchObject({ text: 'Kappa oops' });
    for (const emote of badEmotes.payload.emotes as Array<{ positions: Array<{ start: number; end: number }> }>) {
      for (const position of emote.positions) expect(Number.isInteger(position.start) && Number.isInteger(position.end)).toBe(true);
    }

    // Still the same connection, never dropped, and still serving the channel.
    const { body } = await debug(host);
    expect(body.status).toBe('connected');
    expect(body.counters.reconnects).toBe(reconnectsBefore);
    expect(fake.connections).toBe(connectionsBefore);
    expect(fake.joinedClients(CHANNEL)).toBe(1);
    expect((await readyz(host)).status).toBe(200);
  });

  it('never shows the token on /_debug/twitch', async () => {
    const { text } = await debug(host);
    expect(text).not.toContain(TOKEN);
    expect(text.toLowerCase()).not.toContain('oauth:');
  });

  /** The reconnects the connector scheduled (logged with their delay) since `from`. */
  const backoffsSince = (from: number) =>
    logLines
      .slice(from)
      .map((line) => JSON.parse(line) as { msg: string; attempt: number; delayMs: number })
      .filter((entry) => entry.msg === 'twitch chat: reconnecting after backoff');

  it('reconnects with its own backoff after the connection drops (readyz false while down)', async () => {
    const connectionsBefore = fake.connections;
    const reconnectsBefore = (await debug(host)).body.counters.reconnects;
    const logFrom = logLines.length;
    const statusFrom = observed.envelopes('internal.ingress.v1').length;
    const droppedAt = Date.now();
    fake.dropConnections();
    // The drop is seen (a reconnect scheduled after 150 ms, a disconnected status published) however
    // briefly the connection stays down.
    await waitFor(() => backoffsSince(logFrom).length >= 1, { timeoutMs: 5_000, message: 'a reconnect scheduled after the drop' });
    expect(backoffsSince(logFrom)[0]).toMatchObject({ attempt: 1, delayMs: 150 });
    await observed.waitFor(
      'internal.ingress.v1',
      (value) =>
        value.type === 'system.source.status' &&
        value.payload.sourceId === `twitch:${CHANNEL}` &&
        value.payload.status === 'disconnected' &&
        observed.envelopes('internal.ingress.v1').indexOf(value) >= statusFrom,
    );
    await waitFor(async () => (await readyz(host)).status === 200, { timeoutMs: 10_000, message: 'readyz 200 after reconnecting' });
    const reconnectedAt = fake.lines.filter((line) => line.line === 'CAP LS 302').at(-1)!.at;
    // Our backoff (150 ms first), not Twurple's immediate reconnect; and exactly one new connection.
    expect(reconnectedAt - droppedAt).toBeGreaterThanOrEqual(140);
    expect(fake.connections).toBe(connectionsBefore + 1);
    const { body } = await debug(host);
    expect(body.counters.reconnects).toBe(reconnectsBefore + 1);
    expect(body.lastReconnectAt).toEqual(expect.any(String));
    expect(body.lastError).toMatchObject({ code: 'DISCONNECTED' });
    expect(body.status).toBe('connected');
  });

  it('moves at once when the server sends RECONNECT: no backoff, one new connection, chat flows again', async () => {
    const connectionsBefore = fake.connections;
    const reconnectsBefore = (await debug(host)).body.counters.reconnects;
    const logFrom = logLines.length;
    fake.sendReconnect();
    await waitFor(() => backoffsSince(logFrom).length >= 1, { timeoutMs: 5_000, message: 'the reconnect the server asked for' });
    expect(backoffsSince(logFrom).map((entry) => entry.delayMs)).toEqual([0]);
    await waitFor(
      async () => (await debug(host)).body.counters.reconnects === reconnectsBefore + 1 && (await readyz(host)).status === 200,
      {
        timeoutMs: 10_000,
        message: 'connected again after RECONNECT',
      },
    );
    const { body } = await debug(host);
    expect(body.lastError).toMatchObject({ code: 'SERVER_RECONNECT' });
    expect(body.status).toBe('connected');
    expect(fake.connections).toBe(connectionsBefore + 1);
    expect(fake.joinedClients(CHANNEL)).toBe(1);
    const id = fake.sendChat({ channel: CHANNEL, text: 'after the server moved us' });
    await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id);
  });

  it('keeps retrying with growing delays while the server is down, and recovers when it returns', async () => {
    const reconnectsBefore = (await debug(host)).body.counters.reconnects;
    const logFrom = logLines.length;
    await fake.stop();
    await waitFor(async () => (await readyz(host)).status === 503, { timeoutMs: 5_000, message: 'readyz 503 while the server is down' });
    const statuses = new Set<string>();
    const backoffs = () => backoffsSince(logFrom);
    // Four attempts while the server is away, however slowly this machine runs them.
    await waitFor(
      async () => {
        statuses.add((await debug(host)).body.status);
        return backoffs().length >= 4;
      },
      { timeoutMs: 20_000, intervalMs: 25, message: 'four reconnect attempts' },
    );
    // 150, 300, 600, 600 ms: doubling from IRC_RECONNECT_INITIAL_MS, capped at IRC_RECONNECT_MAX_MS.
    expect(
      backoffs()
        .slice(0, 4)
        .map((entry) => [entry.attempt, entry.delayMs]),
    ).toEqual([
      [1, 150],
      [2, 300],
      [3, 600],
      [4, 600],
    ]);
    expect((await debug(host)).body.reconnectAttempt).toBeGreaterThanOrEqual(4);
    expect([...statuses].every((status) => ['disconnected', 'connecting'].includes(status))).toBe(true);
    expect((await readyz(host)).status).toBe(503);

    await fake.start();
    await waitFor(async () => (await readyz(host)).status === 200, { timeoutMs: 10_000, message: 'readyz 200 after the server returned' });
    const { body } = await debug(host);
    expect(body.counters.reconnects).toBe(reconnectsBefore + 1);
    expect(body.reconnectAttempt).toBe(0);

    // And chat flows again.
    const id = fake.sendChat({ channel: CHANNEL, text: 'back online' });
    await observed.waitFor('internal.ingress.v1', (value) => value.payload?.messageId === id);
    const statusEvents = () =>
      observed
        .envelopes('internal.ingress.v1')
        .filter((value) => value.type === 'system.source.status' && value.payload.sourceId === `twitch:${CHANNEL}`);
    // The status is written to the store before it is published, so chat can overtake it on a busy machine.
    await waitFor(() => statusEvents().at(-1)?.payload.status === 'connected', { message: 'the connected status published last' });
    expect(statusEvents().some((value) => value.payload.status === 'disconnected')).toBe(true);
    expect(observed.deadLetters()).toEqual([]);
  });
});

describe('ingress-egress without Twitch configuration', () => {
  let bus: MemoryBus;
  let host: Host;

  // Each test starts with no stored bot token, whatever ran before it (the configured connection seeds one).
  beforeEach(async () => {
    await store.deleteToken('twitch:bot');
  });
  afterEach(async () => {
    await host?.stop();
    await bus?.close();
    await store.deleteToken('twitch:bot');
  });

  it('is ready, says not_configured and how to connect, and records twitch replies as not delivered', async () => {
    bus = createMemoryBus();
    const observed = await collect(bus, ['internal.ingress.v1', 'internal.finalizer.v1']);
    host = await startTestHost({
      services: [service],
      bus,
      env: { INSTANCE_ID: 'ie-unconfigured', SOURCE_HEARTBEAT_MS: '200', TWITCH_EVENTSUB_ENABLED: 'true' },
      architecture: loadArchitecture(),
      extra: { store },
    });
    // EventSub is enabled but has no app credentials: reported as not configured, not as down.
    await waitFor(async () => (await readyz(host)).body.components['ingress-egress.eventsub'], {
      timeoutMs: 5_000,
      message: 'eventsub health',
    });
    const ready = await readyz(host);
    expect(ready.body.components['ingress-egress.eventsub']).toMatchObject({ ready: true, configured: false });
    expect(ready.body.components['ingress-egress.eventsub'].detail).toContain('TWITCH_CLIENT_ID');
    expect(ready.status).toBe(200);
    expect(ready.body.components['ingress-egress.twitch']).toMatchObject({ ready: true, configured: false });
    expect(ready.body.components['ingress-egress.twitch'].detail).toContain('/oauth/twitch/start');
    const { body } = await debug(host);
    expect(body).toMatchObject({ status: 'not_configured', configured: false });
    expect(body.hint).toContain('TWITCH_CHANNELS');
    expect(body.hint).toContain('TWITCH_ACCESS_TOKEN');

    const status = await observed.waitFor('internal.ingress.v1', (value) => value.type === 'system.source.status');
    expect(status.payload).toMatchObject({ status: 'not_configured', authStatus: 'missing', platform: 'twitch' });

    const envelope: Envelope = {
      v: '1',
      id: 'unconfigured-reply-1',
      correlationId: 'unconfigured-reply-1',
      traceId: 'b'.repeat(32),
      timestamp: new Date().toISOString(),
      type: 'external.chat.message.v1',
      source: { platform: 'twitch', channel: 'somewhere', channelId: '1', egressDestination: 'internal.egress.v1' },
      user: { id: 'u', name: 'u', displayName: 'u', profileImageUrl: '', role: '' },
      routingSlip: [],
      finalizationDestination: 'internal.finalizer.v1',
      payload: {},
      candidates: [createReply('commands', 'nobody will see this')],
    };
    await publish(bus, 'internal.egress.v1', envelope);
    const final = (await observed.waitFor('internal.finalizer.v1', (value) => value.id === envelope.id)) as Envelope;
    expect(final.delivery).toMatchObject({ delivered: false, reason: 'NOT_CONFIGURED' });
    expect(final.outcome).toBe('failed');
    expect(final.errors?.[0]?.code).toBe('NOT_CONFIGURED');
  });

  it('reports a rejected token as an auth error (not ready) and keeps retrying with backoff', async () => {
    bus = createMemoryBus();
    host = await startTestHost({
      services: [service],
      bus,
      env: { ...chatEnv({ TWITCH_ACCESS_TOKEN: 'revoked-token-000', TWITCH_CHANNELS: 'authchan', INSTANCE_ID: 'ie-badtoken' }) },
      architecture: loadArchitecture(),
      extra: { store },
    });
    await waitFor(async () => (await debug(host)).body.reconnectAttempt >= 2, { timeoutMs: 10_000, message: 'two failed attempts' });
    const { body, text } = await debug(host);
    expect(body).toMatchObject({ status: 'error', configured: true, authStatus: 'invalid', lastError: { code: 'AUTH_FAILED' } });
    expect(text).not.toContain('revoked-token-000');
    const ready = await readyz(host);
    expect(ready.status).toBe(503);
    expect(ready.body.components['ingress-egress.twitch'].detail).toContain('error');
    expect(fake.joinedClients('authchan')).toBe(0);
  });

  it('connects with the token the OAuth flow stored as twitch:bot, refreshing and persisting it when expired', async () => {
    const saved = await store.putToken({
      id: 'twitch:bot',
      accessToken: STORE_TOKEN,
      refreshToken: 'stored-refresh-token',
      scopes: ['chat:read', 'chat:edit'],
      obtainedAt: new Date(Date.now() - 7_200_000).toISOString(),
      expiresAt: new Date(Date.now() - 3_600_000).toISOString(),
      userId: fake.botUserId,
      login: 'bitbrat_bot',
    });
    bus = createMemoryBus();
    const linesBefore = fake.lines.length;
    host = await startTestHost({
      services: [service],
      bus,
      // EventSub (on whenever credentials exist) needs Helix, which this chat-only fake does not serve.
      env: {
        INSTANCE_ID: 'ie-stored',
        TWITCH_CHANNELS: 'storechan',
        TWITCH_IRC_URL: fake.url,
        TWITCH_CLIENT_ID: 'fake-client-id',
        TWITCH_CLIENT_SECRET: 'fake-client-secret-value',
        TWITCH_EVENTSUB_ENABLED: 'false',
      },
      architecture: loadArchitecture(),
      extra: { store },
    });
    await waitFor(async () => (await readyz(host)).status === 200, { timeoutMs: 15_000, message: 'connected with the stored token' });
    // The refreshed token is written back after the refresh, not before chat connects with it.
    const refreshed = await waitFor(
      async () => {
        const stored = await store.getToken('twitch:bot');
        return stored && stored.version > saved.version ? stored : undefined;
      },
      { message: 'the refreshed token stored' },
    );
    expect(refreshed!.accessToken).toMatch(/^refreshed-/);
    expect(fake.refreshedTokens).toContain(refreshed!.accessToken);
    const pass = fake.lines.slice(linesBefore).find((line) => line.line.startsWith('PASS '));
    expect(pass?.line).toBe(`PASS oauth:${refreshed!.accessToken}`);
    const { body, text } = await debug(host);
    expect(body).toMatchObject({ status: 'connected', authSource: 'store', botUsername: 'bitbrat_bot' });
    for (const secret of [STORE_TOKEN, refreshed!.accessToken, 'stored-refresh-token', 'fake-client-secret-value'])
      expect(text).not.toContain(secret);
  });
});

describe('connector helpers', () => {
  it('doubles the reconnect delay from the initial value and stays at the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((attempt) => reconnectDelayMs(attempt, 1_000, 30_000))).toEqual([
      1_000, 2_000, 4_000, 8_000, 16_000, 30_000,
    ]);
    expect(reconnectDelayMs(50, 1_000, 30_000)).toBe(30_000);
  });

  it('keeps secrets from Twitch error messages out of what it reports', () => {
    expect(
      safeAuthErrorMessage(
        Object.assign(
          new Error('Encountered HTTP status code 400: Bad Request\n\nURL: https://id.twitch.tv/oauth2/token?client_secret=s3cr3t'),
          { statusCode: 400 },
        ),
      ),
    ).toBe('Twitch answered HTTP 400');
    expect(safeAuthErrorMessage(new Error('failed https://id.twitch.tv/oauth2/token?refresh_token=r3fr3sh&client_secret=s3cr3t now'))).toBe(
      'failed https://id.twitch.tv/oauth2/token?… now',
    );
  });
});
