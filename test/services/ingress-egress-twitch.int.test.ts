/**
 * Twitch through ingress-egress against the fake Twitch (OAuth, Helix, EventSub WebSocket) and the fake IRC,
 * with the real Twurple clients: EventSub started from environment tokens alone, and stream state that stays
 * current (Helix polled every STREAM_POLL_MS, the source record following the chat connection at once).
 * Waits are on the fake, the store and the bus, never on sleeps.
 */
import { describe, expect, it } from 'vitest';
import { ApiClient } from '@twurple/api';
import { RefreshingAuthProvider } from '@twurple/auth';
import { type EventSubState, startEventSub } from '../../src/platforms/twitch/eventsub.js';
import service from '../../src/services/ingress-egress/index.js';
import type { Store } from '../../src/store/index.js';
import { forgetTwitchTokens, useEmbeddedStore, useServiceHost } from '../support/service-test.js';
import { BOT, BROADCASTER_SCOPES, OTHER, STREAMER, THIRD, type TwitchWorld, startTwitchWorld } from '../support/twitch-world.js';
import { waitFor } from '../support/wait.js';

describe('EventSub from environment tokens', () => {
  let store: Store;
  let world: TwitchWorld;

  useEmbeddedStore((opened) => (store = opened), { perTest: true });
  const running = useServiceHost({ services: [service], store: () => store, fakes: () => [world], reset: () => forgetTwitchTokens(store) });

  async function eventsubHealth(): Promise<{ ready: boolean; detail: string; configured?: boolean }> {
    const response = await running.host.app.inject({ method: 'GET', url: '/readyz' });
    return response.json().components['ingress-egress.eventsub'];
  }

  const start = (env: Record<string, string>) => running.start({ INSTANCE_ID: `ie-es-${Math.random().toString(36).slice(2, 7)}`, ...env });

  const subsOf = (channelId: string) =>
    world.api
      .activeSubscriptions()
      .filter((sub) => (sub.condition.broadcaster_user_id ?? sub.condition.to_broadcaster_user_id) === channelId);
  const ownerOf = (sessionId: string) => world.api.sessions.find((session) => session.id === sessionId)?.userId;

  describe('ingress-egress EventSub from environment tokens', () => {
    it('starts EventSub from the bot’s environment tokens alone and names what waits for the broadcaster', async () => {
      world = await startTwitchWorld({ channels: [STREAMER.login, OTHER.login] });
      const observed = await start(world.env());

      await world.api.waitFor(() => world.api.activeSubscriptions().length === 8, 30_000, 'eight subscriptions');
      for (const channel of [STREAMER, OTHER]) {
        expect(
          subsOf(channel.id)
            .map((sub) => sub.type)
            .sort(),
        ).toEqual(['channel.raid', 'channel.update', 'stream.offline', 'stream.online']);
      }
      // Every subscription was made with the bot's token, on one connection.
      expect(new Set(world.api.activeSubscriptions().map((sub) => ownerOf(sub.transport.session_id)))).toEqual(new Set([BOT.id]));
      expect(new Set(world.api.activeSubscriptions().map((sub) => sub.transport.session_id)).size).toBe(1);

      const health = await waitFor(
        async () => {
          const current = await eventsubHealth();
          return current?.detail.includes('8/8') ? current : undefined;
        },
        { message: 'eventsub health with 8/8 active' },
      );
      expect(health.ready).toBe(true);
      expect(health.detail).toContain(
        'waiting for the broadcaster connection on #streamer: channel.follow, channel.subscribe, channel.subscription.gift, channel.subscription.message, channel.cheer',
      );
      expect(health.detail).toContain('waiting for the broadcaster connection on #otherchan');
      expect(health.detail).toContain('/oauth/twitch/start?identity=broadcaster');

      world.api.notify('stream.online', '1', {
        id: '77',
        broadcaster_user_id: OTHER.id,
        broadcaster_user_login: OTHER.login,
        broadcaster_user_name: OTHER.displayName,
        type: 'live',
        started_at: new Date().toISOString(),
      });
      const online = await observed.waitFor('internal.ingress.v1', (value) => value.type === 'system.stream.online');
      expect(online.source).toMatchObject({ platform: 'twitch', channel: 'otherchan', channelId: OTHER.id });
    });

    it('uses TWITCH_BROADCASTER_* for every type of the broadcaster’s channel and the bot’s token elsewhere', async () => {
      world = await startTwitchWorld({ channels: [STREAMER.login, OTHER.login] });
      await start(world.env(world.broadcasterEnv()));
      await world.api.waitFor(() => world.api.activeSubscriptions().length === 14, 30_000, 'fourteen subscriptions');
      expect(subsOf(STREAMER.id)).toHaveLength(10);
      expect(new Set(subsOf(STREAMER.id).map((sub) => ownerOf(sub.transport.session_id)))).toEqual(new Set([STREAMER.id]));
      expect(new Set(subsOf(OTHER.id).map((sub) => ownerOf(sub.transport.session_id)))).toEqual(new Set([BOT.id]));
      // The broadcaster's own subscriptions cost nothing; the bot's four for another channel cost 1 each.
      expect(subsOf(STREAMER.id).every((sub) => sub.cost === 0)).toBe(true);
      expect(subsOf(OTHER.id).map((sub) => sub.cost)).toEqual([1, 1, 1, 1]);
      const stored = await store.getToken('twitch:broadcaster');
      expect(stored?.accessToken).toBeTruthy();
    });

    it('follows with the bot’s token where the bot moderates and reports the channel where it does not', async () => {
      world = await startTwitchWorld({
        channels: [STREAMER.login, OTHER.login],
        botScopes: ['chat:read', 'chat:edit', 'moderator:read:followers'],
      });
      world.api.addModerator(STREAMER.id, BOT.id);
      await start(world.env());
      await world.api.waitFor(() => world.api.activeSubscriptions('channel.follow').length === 1, 30_000, 'a follow subscription');
      expect(world.api.activeSubscriptions('channel.follow')[0]!.condition).toEqual({
        broadcaster_user_id: STREAMER.id,
        moderator_user_id: BOT.id,
      });
      const health = await waitFor(
        async () => {
          const current = await eventsubHealth();
          return current?.detail.includes('channel.follow also works when the bot is a moderator') ? current : undefined;
        },
        { message: 'the refused follow in the health detail' },
      );
      expect(health.detail).toContain('waiting for the broadcaster connection on #otherchan: channel.follow');
      expect(health.detail).not.toContain('on #streamer: channel.follow');
    });

    it('stays within max_total_cost with three channels on the bot’s token and reports the limit as a health error', async () => {
      world = await startTwitchWorld({ channels: [STREAMER.login, OTHER.login, THIRD.login] });
      await start(world.env());
      await world.api.waitFor(() => world.api.activeSubscriptions().length === 10, 30_000, 'ten subscriptions');
      const health = await waitFor(
        async () => {
          const current = await eventsubHealth();
          return current?.detail.includes('max_total_cost') ? current : undefined;
        },
        { message: 'limit error in health' },
      );
      expect(health.ready).toBe(false);
      expect(health.detail).toContain('not subscribed: channel.raid #otherchan, channel.raid #thirdchan');
      expect(world.api.activeSubscriptions('stream.offline')).toHaveLength(3);
    });

    it('picks up a broadcaster connected after start-up (as the OAuth flow stores it) without a restart', async () => {
      world = await startTwitchWorld();
      await start(world.env({ SOURCE_HEARTBEAT_MS: '200' }));
      await world.api.waitFor(() => world.api.activeSubscriptions().length === 4, 30_000, 'the bot’s four subscriptions');
      const token = world.api.issueToken(STREAMER.id, { scopes: BROADCASTER_SCOPES });
      await store.putToken({
        id: 'twitch:broadcaster',
        accessToken: token.accessToken,
        refreshToken: token.refreshToken,
        scopes: BROADCASTER_SCOPES,
        userId: STREAMER.id,
        login: STREAMER.login,
        obtainedAt: new Date().toISOString(),
      });
      await world.api.waitFor(
        () => subsOf(STREAMER.id).length === 10 && subsOf(STREAMER.id).every((sub) => ownerOf(sub.transport.session_id) === STREAMER.id),
        30_000,
        'every type with the broadcaster token',
      );
      const health = await waitFor(
        async () => {
          const current = await eventsubHealth();
          return current?.detail.includes('10/10') ? current : undefined;
        },
        { message: 'eventsub health with 10/10 active' },
      );
      expect(health.detail).not.toContain('waiting for the broadcaster');
    });

    it('is off with TWITCH_EVENTSUB_ENABLED=false', async () => {
      world = await startTwitchWorld();
      await start(world.env({ TWITCH_EVENTSUB_ENABLED: 'false' }));
      const health = await waitFor(() => eventsubHealth(), { message: 'eventsub health' });
      expect(health).toMatchObject({ ready: true, configured: false });
      expect(health.detail).toContain('TWITCH_EVENTSUB_ENABLED=false');
      expect(world.api.sessions).toHaveLength(0);
    });
  });

  describe('the fake enforces Twitch’s EventSub WebSocket limits', () => {
    it('answers 429 with max_total_cost when a user’s subscriptions would cost more than 10, and the listener reports it', async () => {
      world = await startTwitchWorld();
      const provider = new RefreshingAuthProvider({ clientId: world.api.clientId, clientSecret: world.api.clientSecret });
      provider.addUser(BOT.id, {
        accessToken: world.bot.accessToken,
        refreshToken: world.bot.refreshToken,
        scope: [],
        expiresIn: 14_400,
        obtainmentTimestamp: Date.now(),
      });
      const channels = [STREAMER, OTHER, THIRD].map((user) => ({ id: user.id, login: user.login }));
      const targets = channels.flatMap((broadcaster) =>
        (['stream.online', 'stream.offline', 'channel.update', 'channel.raid'] as const).map((kind) => ({
          kind,
          broadcaster,
          tokenUserId: BOT.id,
        })),
      );
      let last: EventSubState | undefined;
      const handle = await startEventSub({
        apiClient: new ApiClient({ authProvider: provider }),
        targets,
        store,
        publish: async () => undefined,
        logger: { debug() {}, info() {}, warn() {}, error() {} },
        onState: (state) => (last = state),
      });
      try {
        await waitFor(() => (last && last.active + last.failed === 12 ? last : undefined), {
          timeoutMs: 15_000,
          message: 'every subscription answered',
        });
        expect(last!.active).toBe(10);
        expect(last!.refused).toHaveLength(2);
        for (const refusal of last!.refused!) {
          expect(refusal.httpStatus).toBe(429);
          expect(refusal.error).toContain('max_total_cost');
        }
        expect(world.api.requests.filter((request) => request.path === '/eventsub/subscriptions' && request.status === 429)).toHaveLength(
          2,
        );
      } finally {
        await handle.stop();
      }
    });
  });
});

describe('stream state from Helix', () => {
  let store: Store;
  let world: TwitchWorld;

  useEmbeddedStore((opened) => (store = opened), { perTest: true });
  const running = useServiceHost({ services: [service], store: () => store, fakes: () => [world], reset: () => forgetTwitchTokens(store) });

  const start = (extra: Record<string, string> = {}) =>
    running.start({ ...world.env({ STREAM_POLL_MS: '100', ...extra }), INSTANCE_ID: `ie-st-${Math.random().toString(36).slice(2, 7)}` });

  const sourceWhere = (id: string, check: (source: any) => boolean, message: string) =>
    waitFor(
      async () => {
        const source = await store.getSource(id);
        return source && check(source) ? source : undefined;
      },
      { timeoutMs: 15_000, message },
    );

  describe('stream status from Helix', () => {
    it('shows a stream that was already live at start-up as live, with title, game, viewers and start time', async () => {
      world = await startTwitchWorld({ channels: [STREAMER.login, OTHER.login] });
      const startedAt = new Date(Date.now() - 3_600_000).toISOString();
      world.api.setStream(STREAMER.id, {
        id: 's-1',
        title: 'Already live',
        gameName: 'Celeste',
        gameId: '504461',
        viewerCount: 33,
        startedAt,
      });
      const observed = await start();
      const source = await sourceWhere('twitch:streamer', (doc) => doc.streamStatus === 'online', 'streamer online');
      expect(source).toMatchObject({ viewerCount: 33, metadata: { title: 'Already live', game: 'Celeste', startedAt } });
      const online = await observed.waitFor('internal.ingress.v1', (value) => value.type === 'system.stream.online');
      expect(online.payload).toMatchObject({ channel: 'streamer', title: 'Already live', detectedBy: 'poll' });
      await sourceWhere('twitch:otherchan', (doc) => doc.streamStatus === 'offline', 'otherchan offline');
    });

    it('refreshes title, game and viewers while live, and reports the end of the stream', async () => {
      world = await startTwitchWorld();
      world.api.setStream(STREAMER.id, { id: 's-2', title: 'Part one', gameName: 'Celeste', viewerCount: 10 });
      const observed = await start();
      await sourceWhere('twitch:streamer', (doc) => doc.metadata?.title === 'Part one', 'first title');
      await observed.waitFor('internal.ingress.v1', (value) => value.type === 'system.stream.online');
      world.api.setStream(STREAMER.id, { id: 's-2', title: 'Part two', gameName: 'Hades', viewerCount: 99 });
      const refreshed = await sourceWhere('twitch:streamer', (doc) => doc.metadata?.title === 'Part two', 'refreshed title');
      expect(refreshed).toMatchObject({ streamStatus: 'online', viewerCount: 99, metadata: { game: 'Hades' } });
      // A refresh is not a new go-live: still exactly one online event.
      expect(observed.received.filter((item) => item.value.type === 'system.stream.online')).toHaveLength(1);
      world.api.setStream(STREAMER.id, null);
      const ended = await sourceWhere('twitch:streamer', (doc) => doc.streamStatus === 'offline', 'stream ended');
      expect(ended.viewerCount).toBeNull();
      await observed.waitFor('internal.ingress.v1', (value) => value.type === 'system.stream.offline');
    });

    it('corrects an offline missed while the platform was down', async () => {
      world = await startTwitchWorld();
      await store.mergeSource({
        id: 'twitch:streamer',
        platform: 'twitch',
        streamStatus: 'online',
        viewerCount: 50,
        metadata: { title: 'Yesterday', startedAt: '2026-01-01T00:00:00.000Z' },
      });
      const observed = await start();
      const offline = await observed.waitFor('internal.ingress.v1', (value) => value.type === 'system.stream.offline');
      expect(offline.payload).toMatchObject({ channel: 'streamer', detectedBy: 'poll' });
      await sourceWhere(
        'twitch:streamer',
        (doc) => doc.streamStatus === 'offline' && doc.metadata?.startedAt === null,
        'corrected to offline',
      );
    });
  });

  describe('channel updates', () => {
    it('shows a new title and game from channel.update at once, without waiting for the poll', async () => {
      world = await startTwitchWorld();
      await start({ STREAM_POLL_MS: '3600000', ...world.broadcasterEnv() });
      await world.api.waitFor(() => world.api.activeSubscriptions('channel.update').length === 1, 15_000, 'channel.update subscription');
      world.api.notify('channel.update', '2', {
        broadcaster_user_id: STREAMER.id,
        broadcaster_user_login: STREAMER.login,
        broadcaster_user_name: STREAMER.displayName,
        title: 'New title',
        language: 'en',
        category_id: '509658',
        category_name: 'Just Chatting',
        content_classification_labels: [],
      });
      const source = await sourceWhere('twitch:streamer', (doc) => doc.metadata?.title === 'New title', 'the new title');
      expect(source.metadata).toMatchObject({ game: 'Just Chatting', gameId: '509658' });
    });
  });

  describe('the source record', () => {
    it('follows the chat connection at once, even when nothing has consumed ingress yet', async () => {
      world = await startTwitchWorld();
      await start({ TWITCH_EVENTSUB_ENABLED: 'false' });
      // No persistence service runs here: the record can only come from ingress-egress itself.
      const source = await sourceWhere('twitch:streamer', (doc) => doc.status === 'connected', 'connected source record');
      expect(source).toMatchObject({ platform: 'twitch', authStatus: 'valid' });
    });
  });
});
