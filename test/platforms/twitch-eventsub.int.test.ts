import { RefreshingAuthProvider } from '@twurple/auth';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EventType, validateEnvelope, type Envelope } from '../../src/core/index.js';
import {
  ALL_EVENTSUB_KINDS,
  EVENTSUB_VERSIONS,
  startEventSub,
  type EventSubHandle,
  type EventSubState,
} from '../../src/platforms/twitch/eventsub.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startFakeTwitch, useFakeTwitch, type FakeTwitch } from '../fakes/twitch-api.js';
import { EVENTSUB_BROADCASTER as BROADCASTER, EVENTSUB_EVENTS as EVENTS } from '../support/eventsub-events.js';
import { waitFor } from '../support/wait.js';

const SCOPES = ['moderator:read:followers', 'channel:read:subscriptions', 'bits:read', 'channel:read:redemptions'];
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

describe('Twitch EventSub over WebSocket (real Twurple listener against the fake)', () => {
  let fake: FakeTwitch;
  let restoreEnv: () => void;
  let store: Store;
  let published: Envelope[];
  let states: EventSubState[];
  const handles: EventSubHandle[] = [];

  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    await store.init();
  });
  afterAll(async () => {
    await store?.close();
  });

  async function setup(options: { keepaliveTimeoutSeconds?: number; scopes?: string[] } = {}) {
    fake = await startFakeTwitch({ keepaliveTimeoutSeconds: options.keepaliveTimeoutSeconds ?? 10 });
    restoreEnv = useFakeTwitch(fake);
    fake.addUser(BROADCASTER);
    published = [];
    states = [];
    return options.scopes ?? SCOPES;
  }

  async function start(scopes = SCOPES): Promise<EventSubHandle> {
    const token = fake.issueToken(BROADCASTER.id, { scopes });
    const authProvider = new RefreshingAuthProvider({ clientId: fake.clientId, clientSecret: fake.clientSecret });
    authProvider.addUser(BROADCASTER.id, {
      accessToken: token.accessToken,
      refreshToken: token.refreshToken,
      scope: scopes,
      expiresIn: 14_400,
      obtainmentTimestamp: Date.now(),
    });
    const handle = await startEventSub({
      authProvider,
      broadcasterLogin: BROADCASTER.login,
      store,
      publish: async (envelope) => {
        published.push(envelope);
      },
      logger: silent,
      onState: (state) => states.push(state),
    });
    handles.push(handle);
    return handle;
  }

  const allActive = (count = ALL_EVENTSUB_KINDS.length) =>
    fake.waitFor(() => fake.activeSubscriptions().length === count, 15_000, `${count} active subscriptions`);
  const eventsOf = (kind: string) =>
    published.filter((envelope) => envelope.type === EventType.twitchEventSub && envelope.externalEvent?.kind === kind);

  beforeEach(async () => {
    await setup();
  });
  afterEach(async () => {
    for (const handle of handles.splice(0)) await handle.stop();
    restoreEnv?.();
    await fake?.stop();
  });

  it('creates all ten subscriptions on the socket session, with Twitch versions and conditions', async () => {
    const handle = await start();
    await allActive();
    const session = fake.currentSession()!;
    const subs = fake.activeSubscriptions();
    expect(subs.map((sub) => sub.type).sort()).toEqual([...ALL_EVENTSUB_KINDS].sort());
    for (const sub of subs) {
      expect(sub.transport.session_id).toBe(session.id);
      expect(sub.version).toBe(EVENTSUB_VERSIONS[sub.type as keyof typeof EVENTSUB_VERSIONS]);
    }
    expect(subs.find((sub) => sub.type === 'channel.follow')!.condition).toEqual({
      broadcaster_user_id: '1001',
      moderator_user_id: '1001',
    });
    expect(subs.find((sub) => sub.type === 'channel.raid')!.condition).toEqual({ to_broadcaster_user_id: '1001' });
    // The broadcaster id was looked up over Helix from the login.
    expect(fake.requests.some((request) => request.path === '/mock/users' && request.query.login === 'streamer')).toBe(true);
    await waitFor(() => handle.snapshot().subscriptions.every((sub) => sub.status === 'active'));
    const snapshot = handle.snapshot();
    expect(snapshot).toMatchObject({
      status: 'connected',
      sessionId: session.id,
      sessions: 1,
      broadcaster: { id: '1001', login: 'streamer' },
    });
    expect(states.at(-1)).toMatchObject({ status: 'connected', active: 10, wanted: 10, failed: 0 });
    expect(JSON.stringify(snapshot)).not.toMatch(/at[0-9a-f]{30}/);
  });

  it('publishes one valid, normalized twitch.eventsub.v1 envelope per notification', async () => {
    await start();
    await allActive();
    fake.setStream(BROADCASTER.id, { title: 'Speedrunning Celeste', gameName: 'Celeste', viewerCount: 12 });
    const sent = new Map<string, string>();
    for (const kind of ALL_EVENTSUB_KINDS) sent.set(kind, fake.notify(kind, undefined, EVENTS[kind]!)[0]!);
    await waitFor(() => ALL_EVENTSUB_KINDS.every((kind) => eventsOf(kind).length === 1), {
      timeoutMs: 15_000,
      message: 'one envelope per kind',
    });

    for (const kind of ALL_EVENTSUB_KINDS) {
      const envelope = eventsOf(kind)[0]!;
      const validation = validateEnvelope(envelope);
      expect(validation.ok, validation.ok ? '' : validation.error).toBe(true);
      expect(envelope.source).toEqual({ platform: 'twitch', channel: 'streamer', channelId: '1001' });
      expect(envelope.routingSlip).toEqual([]);
      expect(envelope.finalizationDestination).toBe('internal.finalizer.v1');
      expect(envelope.externalEvent).toMatchObject({
        id: sent.get(kind),
        source: 'twitch.eventsub',
        kind,
        version: EVENTSUB_VERSIONS[kind],
      });
      expect(envelope.externalEvent!.rawPayload).toEqual(EVENTS[kind]);
      expect(Date.parse(envelope.externalEvent!.createdAt)).not.toBeNaN();
    }

    const follow = eventsOf('channel.follow')[0]!;
    expect(follow.externalEvent!.payload).toEqual({
      broadcaster: { id: '1001', login: 'streamer', name: 'Streamer' },
      user: { id: '2001', login: 'fan_one', name: 'Fan_One' },
      followedAt: '2025-11-21T17:02:00.123Z',
    });
    expect(follow.externalEvent!.createdAt).toBe('2025-11-21T17:02:00.123Z');
    expect(follow.user).toMatchObject({ id: '2001', name: 'fan_one', displayName: 'Fan_One' });
    expect(follow.userId).toBe('2001');

    expect(eventsOf('channel.update')[0]!.externalEvent!.payload).toMatchObject({
      title: 'Speedrunning Celeste',
      categoryName: 'Celeste',
      categoryId: '504461',
      language: 'en',
    });
    expect(eventsOf('channel.update')[0]!.user.id).toBe('system');
    expect(eventsOf('channel.raid')[0]!.externalEvent!.payload).toMatchObject({
      fromBroadcaster: { id: '3001', login: 'raider', name: 'Raider' },
      viewers: 37,
    });
    expect(eventsOf('channel.raid')[0]!.user.name).toBe('raider');
    expect(eventsOf('channel.subscribe')[0]!.externalEvent!.payload).toMatchObject({
      user: { login: 'subber' },
      tier: '2000',
      tierLevel: 2,
      isGift: false,
    });
    expect(eventsOf('channel.subscription.gift')[0]!.externalEvent!.payload).toMatchObject({
      user: null,
      isAnonymous: true,
      total: 5,
      tierLevel: 1,
      cumulativeTotal: null,
    });
    expect(eventsOf('channel.subscription.gift')[0]!.user.id).toBe('anonymous');
    expect(eventsOf('channel.cheer')[0]!.externalEvent!.payload).toMatchObject({
      user: { id: '2003' },
      bits: 100,
      message: 'Cheer100 great run',
      isAnonymous: false,
    });
    expect(eventsOf('channel.channel_points_custom_reward_redemption.add')[0]!.externalEvent!.payload).toMatchObject({
      user: { login: 'redeemer' },
      rewardTitle: 'Hydrate!',
      reward: { id: 'reward-1', title: 'Hydrate!', cost: 500 },
      userInput: 'play the boss music',
      redemptionId: 'redemption-1',
    });
  });

  it('publishes system.stream.online with Helix stream info and system.stream.offline', async () => {
    await start();
    await allActive();
    fake.setStream(BROADCASTER.id, {
      id: '9001',
      title: 'Speedrunning Celeste',
      gameId: '504461',
      gameName: 'Celeste',
      viewerCount: 321,
      startedAt: '2025-11-21T17:00:00Z',
    });
    const [onlineId] = fake.notify('stream.online', '1', EVENTS['stream.online']!);
    const online = await waitFor(() => published.find((envelope) => envelope.type === EventType.streamOnline), {
      message: 'system.stream.online',
    });
    const onlineEventSub = published.find((envelope) => envelope.externalEvent?.kind === 'stream.online')!;
    expect(validateEnvelope(online).ok).toBe(true);
    expect(online.payload).toMatchObject({
      sourceId: 'twitch:streamer',
      platform: 'twitch',
      streamStatus: 'online',
      startedAt: '2025-11-21T17:00:00.000Z',
      title: 'Speedrunning Celeste',
      game: 'Celeste',
      viewerCount: 321,
      eventSubMessageId: onlineId,
    });
    expect(online.traceId).toBe(onlineEventSub.traceId);
    expect(published.indexOf(onlineEventSub)).toBeLessThan(published.indexOf(online));
    expect(fake.requests.some((request) => request.path === '/mock/streams' && request.query.user_id === '1001')).toBe(true);

    fake.setStream(BROADCASTER.id, null);
    fake.notify('stream.offline', '1', EVENTS['stream.offline']!);
    const offline = await waitFor(() => published.find((envelope) => envelope.type === EventType.streamOffline), {
      message: 'system.stream.offline',
    });
    expect(validateEnvelope(offline).ok).toBe(true);
    expect(offline.payload).toMatchObject({ sourceId: 'twitch:streamer', platform: 'twitch', streamStatus: 'offline' });
    expect(eventsOf('stream.offline')).toHaveLength(1);
  });

  it('falls back to the channel title and game when Helix has no stream yet', async () => {
    await start();
    await allActive();
    fake.setChannel(BROADCASTER.id, { title: 'Just went live', gameName: 'Celeste', gameId: '504461' });
    fake.notify('stream.online', '1', EVENTS['stream.online']!);
    const online = await waitFor(() => published.find((envelope) => envelope.type === EventType.streamOnline));
    expect(online.payload).toMatchObject({
      streamStatus: 'online',
      title: 'Just went live',
      game: 'Celeste',
      startedAt: '2025-11-21T17:00:00Z',
    });
    expect(online.payload.viewerCount).toBeUndefined();
  });

  it('ignores a duplicate message id, also after a restart with the same store', async () => {
    const first = await start();
    await allActive();
    const [messageId] = fake.notify('channel.follow', '2', EVENTS['channel.follow']!);
    await waitFor(() => eventsOf('channel.follow').length === 1);
    fake.sendDuplicate(messageId!);
    await waitFor(() => first.snapshot().counters.duplicates === 1, { message: 'the duplicate to be counted' });
    expect(eventsOf('channel.follow')).toHaveLength(1);

    // Restart: a new listener and a new session, the same store.
    await first.stop();
    const second = await start();
    await fake.waitFor(
      () => fake.sessions.length === 2 && fake.activeSubscriptions().length === 10,
      15_000,
      'resubscribed on a new session',
    );
    fake.sendDuplicate(messageId!);
    await waitFor(() => second.snapshot().counters.duplicates === 1, { message: 'the duplicate after restart' });
    expect(second.snapshot().counters.received).toBe(1);
    expect(eventsOf('channel.follow')).toHaveLength(1);

    // A new message still goes through.
    fake.notify('channel.follow', '2', { ...EVENTS['channel.follow']!, user_id: '2999', user_login: 'newfan', user_name: 'NewFan' });
    await waitFor(() => eventsOf('channel.follow').length === 2);
    expect(eventsOf('channel.follow')[1]!.user.name).toBe('newfan');
  });

  it('follows session_reconnect to the new URL without re-subscribing or losing events', async () => {
    const handle = await start();
    await allActive();
    const session = fake.currentSession()!;
    const createdBefore = fake.requests.filter((request) => request.method === 'POST' && request.path === '/eventsub/subscriptions').length;
    await fake.sendReconnect();
    // Twurple closes the old socket itself once welcomed on the new one.
    await fake.waitFor(() => session.closes.some((close) => close.handover), 10_000, 'old socket closed');
    expect(session.closes[0]!.by).toBe('client');
    expect(session.sockets).toHaveLength(2);
    expect(fake.sessions).toHaveLength(1);

    fake.notify('channel.cheer', '1', EVENTS['channel.cheer']!);
    await waitFor(() => eventsOf('channel.cheer').length === 1, { message: 'a cheer after the reconnect' });
    expect(fake.requests.filter((request) => request.method === 'POST' && request.path === '/eventsub/subscriptions')).toHaveLength(
      createdBefore,
    );
    expect(fake.activeSubscriptions()).toHaveLength(10);
    expect(handle.snapshot()).toMatchObject({ status: 'connected', sessionId: session.id, sessions: 1 });
  });

  it('recovers from a keepalive timeout: reconnects and recreates every subscription on the new session', async () => {
    await fake.stop();
    restoreEnv();
    await setup({ keepaliveTimeoutSeconds: 1 });
    const handle = await start();
    await allActive();
    const firstSession = fake.currentSession()!;
    fake.stopKeepalives();
    await fake.waitFor(
      () => fake.sessions.length === 2 && fake.activeSubscriptions().length === 10,
      20_000,
      'subscriptions on a new session',
    );
    const secondSession = fake.currentSession()!;
    expect(secondSession.id).not.toBe(firstSession.id);
    expect(firstSession.status).toBe('disconnected');
    expect(fake.activeSubscriptions().every((sub) => sub.transport.session_id === secondSession.id)).toBe(true);
    expect(
      fake.subscriptions
        .filter((sub) => sub.transport.session_id === firstSession.id)
        .every((sub) => sub.status === 'websocket_disconnected'),
    ).toBe(true);

    fake.notify('channel.raid', '1', EVENTS['channel.raid']!);
    await waitFor(() => eventsOf('channel.raid').length === 1, { message: 'a raid after the keepalive reconnect' });
    await waitFor(() => handle.snapshot().subscriptions.every((sub) => sub.status === 'active'));
    expect(handle.snapshot()).toMatchObject({ status: 'connected', sessionId: secondSession.id, sessions: 2 });
    expect(states.some((state) => state.status === 'disconnected')).toBe(true);
  });

  it('reports a subscription Twitch refuses and a revoked one as state, without throwing', async () => {
    const handle = await start(SCOPES.filter((scope) => scope !== 'bits:read'));
    await allActive(9);
    await waitFor(() => handle.snapshot().subscriptions.find((sub) => sub.kind === 'channel.cheer')?.status === 'failed' || undefined, {
      message: 'failed cheer subscription',
    });
    fake.revoke('channel.follow');
    await waitFor(() => handle.snapshot().subscriptions.find((sub) => sub.kind === 'channel.follow')?.status === 'revoked' || undefined);
    expect(states.at(-1)).toMatchObject({ status: 'connected', active: 8, wanted: 10, failed: 2 });
    expect(handle.snapshot().lastError?.message).toMatch(/channel.follow revoked/);
    // Other subscriptions keep working.
    fake.notify('channel.subscribe', '1', EVENTS['channel.subscribe']!);
    await waitFor(() => eventsOf('channel.subscribe').length === 1);
  });
});
