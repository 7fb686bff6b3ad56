/**
 * Stream state that stays current: polls Helix (`GET /streams`, one call for up to 100 channels) every
 * `pollMs`, writes title, game, viewer count and start time to each channel's `sources` record, and
 * publishes `system.stream.online` / `system.stream.offline` when the state changed without an EventSub
 * event saying so: a stream already live at start-up, or an offline missed while BitBrat was down.
 */
import type { ApiClient } from '@twurple/api';
import { createEnvelope, EventType, type Envelope } from '../../core/index.js';
import type { SourceState, Store } from '../../store/index.js';
import { twitchSourceId } from './normalize.js';
import { safeTwitchErrorMessage } from './token-store.js';

/** Default interval of the Helix stream poll (ms). */
export const DEFAULT_STREAM_POLL_MS = 60_000;
/** Helix lists a new stream a little after EventSub's stream.online; one miss is not an offline. */
const MISSES_BEFORE_OFFLINE = 2;

/** The current stream of one channel as BitBrat knows it. */
export interface ChannelStreamState {
  channel: string;
  channelId: string;
  online: boolean | null;
  title?: string;
  game?: string;
  gameId?: string;
  viewerCount?: number | null;
  startedAt?: string | null;
  streamId?: string;
  checkedAt?: string;
}

export interface StreamStatusOptions {
  apiClient: Pick<ApiClient, 'streams'>;
  channels: ReadonlyArray<{ id: string; login: string }>;
  store: Pick<Store, 'mergeSource' | 'getSource'>;
  /** Publishes to ingress (transitions only). */
  publish(envelope: Envelope, msgId?: string): Promise<void>;
  /** Default DEFAULT_STREAM_POLL_MS. */
  pollMs?: number;
  logger: { warn: (obj: unknown, msg?: string) => void; info: (obj: unknown, msg?: string) => void };
  now?: () => number;
}

export interface StreamStatusPoller {
  /** Polls once now (the first poll also runs at start). Never throws; failures are logged and kept as lastError. */
  refresh(): Promise<void>;
  /** Tells the poller an EventSub event already reported a transition, so it does not report it again. */
  noteEvent(channelId: string, online: boolean): void;
  snapshot(): { pollMs: number; lastError?: string; channels: ChannelStreamState[] };
  stop(): Promise<void>;
}

interface Tracked extends ChannelStreamState {
  misses: number;
}

/** The `system.stream.*` envelope for a transition the poll found. */
export function buildPolledStreamEnvelope(state: ChannelStreamState, at: Date): Envelope {
  const payload: Record<string, unknown> = {
    sourceId: twitchSourceId(state.channel),
    platform: 'twitch',
    channel: state.channel,
    channelId: state.channelId,
    streamStatus: state.online ? 'online' : 'offline',
    detectedBy: 'poll',
    at: at.toISOString(),
  };
  if (state.online) {
    for (const [key, value] of Object.entries({
      title: state.title,
      game: state.game,
      gameId: state.gameId,
      viewerCount: state.viewerCount,
      startedAt: state.startedAt,
      streamId: state.streamId,
    })) {
      if (value !== undefined && value !== null) payload[key] = value;
    }
  }
  return createEnvelope({
    type: state.online ? EventType.streamOnline : EventType.streamOffline,
    source: { platform: 'twitch', channel: state.channel, channelId: state.channelId },
    payload,
    timestamp: at,
    extra: { channel: `#${state.channel}` },
  });
}

/** The `sources` patch for a channel's stream state. */
export function streamSourcePatch(state: ChannelStreamState, at: Date): SourceState {
  return {
    id: twitchSourceId(state.channel),
    platform: 'twitch',
    streamStatus: state.online === null ? 'unknown' : state.online ? 'online' : 'offline',
    lastStreamUpdate: at.toISOString(),
    viewerCount: state.online ? (state.viewerCount ?? null) : null,
    metadata: state.online
      ? {
          title: state.title,
          game: state.game,
          gameName: state.game,
          gameId: state.gameId,
          startedAt: state.startedAt,
          streamId: state.streamId,
          streamCheckedAt: at.toISOString(),
        }
      : { startedAt: null, streamCheckedAt: at.toISOString() },
  };
}

/** Starts polling (first poll immediately, in the background). */
export function createStreamStatusPoller(options: StreamStatusOptions): StreamStatusPoller {
  const pollMs = options.pollMs ?? DEFAULT_STREAM_POLL_MS;
  const now = options.now ?? Date.now;
  const tracked = new Map<string, Tracked>(
    options.channels.map((channel) => [channel.id, { channel: channel.login, channelId: channel.id, online: null, misses: 0 }]),
  );
  let lastError: string | undefined;
  let first = true;
  let stopped = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const poll = async (): Promise<void> => {
    const ids = [...tracked.keys()];
    if (ids.length === 0) return;
    let streams: Awaited<ReturnType<ApiClient['streams']['getStreamsByUserIds']>>;
    try {
      streams = await options.apiClient.streams.getStreamsByUserIds(ids);
      lastError = undefined;
    } catch (error) {
      lastError = safeTwitchErrorMessage(error);
      options.logger.warn({ component: 'stream-status', error: lastError }, 'helix stream poll failed; keeping the last known state');
      return;
    }
    const at = new Date(now());
    const live = new Map(streams.map((stream) => [stream.userId, stream]));
    if (first) {
      // What the store believed before this process started: a stream it thinks is live may have ended.
      for (const state of tracked.values()) {
        if (state.online !== null) continue;
        const stored = await options.store.getSource(twitchSourceId(state.channel)).catch(() => undefined);
        if (stored?.streamStatus === 'online') state.online = true;
        else if (stored?.streamStatus === 'offline') state.online = false;
        if (typeof stored?.metadata?.streamId === 'string') state.streamId = stored.metadata.streamId;
      }
    }
    for (const state of tracked.values()) {
      const stream = live.get(state.channelId);
      const was = state.online;
      // A different stream id than the one known means a stream ended and a new one began (e.g. while BitBrat was down).
      const newStream = Boolean(stream && was === true && state.streamId && stream.id && state.streamId !== stream.id);
      if (stream) {
        state.misses = 0;
        Object.assign(state, {
          online: true,
          title: stream.title,
          game: stream.gameName,
          gameId: stream.gameId,
          viewerCount: stream.viewers,
          startedAt: stream.startDate.toISOString(),
          streamId: stream.id,
        });
      } else {
        state.misses += 1;
        // At start-up Helix is believed at once; later a live stream must be missing twice (Helix lags).
        if (was === true && !first && state.misses < MISSES_BEFORE_OFFLINE) {
          state.checkedAt = at.toISOString();
          continue;
        }
        Object.assign(state, { online: false, viewerCount: null, startedAt: null });
      }
      state.checkedAt = at.toISOString();
      await options.store
        .mergeSource(streamSourcePatch(state, at))
        .catch((error: unknown) =>
          options.logger.warn({ component: 'stream-status', err: error, channel: state.channel }, 'could not write stream state'),
        );
      if ((was !== state.online && (state.online || was === true)) || newStream) {
        options.logger.info(
          { component: 'stream-status', channel: state.channel, online: state.online },
          state.online ? 'stream is live (found by poll)' : 'stream went offline (found by poll)',
        );
        const envelope = buildPolledStreamEnvelope(state, at);
        await options
          .publish(
            envelope,
            `stream-poll:${state.channelId}:${state.online ? `online:${state.streamId ?? ''}` : `offline:${at.getTime()}`}`,
          )
          .catch((error: unknown) =>
            options.logger.warn(
              { component: 'stream-status', err: error, channel: state.channel },
              'could not publish the stream transition',
            ),
          );
      }
    }
    first = false;
  };

  const refresh = (): Promise<void> => {
    // One poll at a time; a refresh during a poll waits for it and then polls again.
    const next = (running ?? Promise.resolve()).then(() => (stopped ? undefined : poll()));
    running = next.catch(() => undefined);
    return running;
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      void refresh().finally(schedule);
    }, pollMs);
    timer.unref();
  };
  void refresh().finally(schedule);

  return {
    refresh,
    noteEvent(channelId, online) {
      const state = tracked.get(channelId);
      if (!state) return;
      state.online = online;
      state.misses = 0;
      if (!online) Object.assign(state, { viewerCount: null, startedAt: null });
    },
    snapshot() {
      return {
        pollMs,
        ...(lastError ? { lastError } : {}),
        channels: [...tracked.values()].map(({ misses: _misses, ...state }) => ({ ...state })),
      };
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
