import { channelName, twitchSourceId } from '../platforms/twitch/normalize.js';
import type { SourceState, Store } from '../store/types.js';

/** Platforms whose channels are streams with a `sources` document of their own. */
const STREAMING_PLATFORMS: ReadonlySet<string> = new Set(['twitch']);

/**
 * The `sources` document of the stream a message belongs to, for `!uptime`, command variables and the
 * bot's stream context. A channel's document is `{platform}:{channel name}` (Twitch's are) or
 * `{platform}:{channel id}`; the Twitch channel of the same name, or a document whose display name, channel
 * or login metadata is that name, also counts. A message
 * from somewhere that is not a stream (the API console, a chat bridge) gets the streamer's live source,
 * or else the one whose stream state is known. A stream platform's channel never borrows another's state.
 */
export async function findStreamSource(
  store: Pick<Store, 'getSource' | 'listSources'>,
  source: { platform: string; channel: string; channelId?: string },
): Promise<SourceState | undefined> {
  const channel = channelName(source.channel);
  const ids = [
    channel && `${source.platform}:${channel}`,
    source.channelId && `${source.platform}:${source.channelId}`,
    channel && twitchSourceId(channel),
  ];
  for (const id of new Set(ids)) {
    const found = id ? await store.getSource(id) : undefined;
    if (found) return found;
  }
  const all = await store.listSources();
  const named = channel
    ? all.find(
        (candidate) =>
          candidate.platform === source.platform &&
          (candidate.displayName?.toLowerCase() === channel ||
            String(candidate.metadata?.channel ?? candidate.metadata?.login ?? '').toLowerCase() === channel),
      )
    : undefined;
  if (named || STREAMING_PLATFORMS.has(source.platform)) return named;
  return all.find((item) => item.streamStatus === 'online') ?? all.find((item) => item.streamStatus !== undefined);
}
