/**
 * Stream state that stays current: ingress-egress polls Helix (STREAM_POLL_MS) on the fake Twitch and
 * keeps each channel's `sources` record and the `system.stream.*` events right; the source record follows
 * the chat connection at once. Waits are on the store and the bus, never on sleeps.
 */
import { describe, expect, it } from 'vitest';
import service from '../../src/services/ingress-egress/index.js';
import type { Store } from '../../src/store/index.js';
import { forgetTwitchTokens, useEmbeddedStore, useServiceHost } from '../support/service-test.js';
import { OTHER, STREAMER, startTwitchWorld, type TwitchWorld } from '../support/twitch-world.js';
import { waitFor } from '../support/wait.js';

let store: Store;
let world: TwitchWorld;

useEmbeddedStore((opened) => (store = opened));
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
