import type { SourceState } from '../../store/index.js';

/** A channel's current stream as the API shows it (GET /api/streams). */
export interface StreamState {
  channel: string;
  sourceId: string;
  platform: string;
  /** `online`, `offline`, or `unknown` before the first Helix poll or EventSub event. */
  status: 'online' | 'offline' | 'unknown';
  title: string | null;
  game: string | null;
  viewerCount: number | null;
  startedAt: string | null;
  /** When the stream state last changed or was refreshed. */
  updatedAt: string | null;
}

const text = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null);

/** The stream state in a Twitch channel's `sources` document; undefined for other sources and the `twitch:chat` placeholder. */
export function streamStateOf(source: SourceState | undefined): StreamState | undefined {
  if (source?.platform !== 'twitch' || !source.id.startsWith('twitch:') || source.id === 'twitch:chat') return undefined;
  const metadata = source.metadata ?? {};
  const status = source.streamStatus ?? 'unknown';
  const online = status === 'online';
  return {
    channel: source.id.slice('twitch:'.length),
    sourceId: source.id,
    platform: 'twitch',
    status,
    title: text(metadata.title),
    game: text(metadata.game) ?? text(metadata.gameName),
    viewerCount: online && typeof source.viewerCount === 'number' ? source.viewerCount : null,
    startedAt: online ? text(metadata.startedAt) : null,
    updatedAt: text(metadata.streamCheckedAt) ?? source.lastStreamUpdate ?? null,
  };
}
