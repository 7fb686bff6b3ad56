/**
 * A Kick channel as a source: a `system.source.status` for `kick:<slug>` (persistence merges it into
 * `sources`). "Connected" means the webhook subscriptions exist and a token works; the last webhook's lag
 * and arrival time are in the metadata, so a streamer can see when Kick's delivery falls behind.
 */
import { createSourceStatus, type Envelope } from '../../core/index.js';
import { kickChannelName, kickSourceId } from './normalize.js';

export type KickConnectionStatus = 'connected' | 'connecting' | 'disconnected' | 'error' | 'not_configured';

export interface KickStatusInput {
  /** Channel slug; `''` when no channel is configured. */
  slug: string;
  broadcasterUserId?: string;
  status: KickConnectionStatus;
  authStatus: 'valid' | 'expired' | 'missing' | 'invalid' | 'unknown';
  /** `lost`: events that could not reach the bus (not flushed at shutdown). */
  metrics: { messagesIn: number; messagesOut: number; errors: number; reconnects: number; lost?: number };
  lastError: { code: string; message: string; at: string } | null;
  /** Subscribed event types for this channel. */
  subscriptions?: string[];
  /** Lag of the last webhook (Kick's time of the event → arrival), ms. */
  lastLagMs?: number | null;
  lastEventAt?: string | null;
  /** The stream's state as last learned (GET /channels at start, then livestream.status.updated). */
  stream?: { online: boolean; title?: string; startedAt?: string; viewerCount?: number };
  /** What to set, when not configured. */
  hint?: string;
  at?: Date;
}

/** The `system.source.status` envelope for one Kick channel. */
export function buildKickStatusEnvelope(input: KickStatusInput): Envelope {
  const slug = kickChannelName(input.slug);
  return createSourceStatus({
    at: input.at ?? new Date(),
    source: { platform: 'kick', channel: slug, channelId: input.broadcasterUserId ?? '' },
    sourceId: kickSourceId(slug),
    displayName: slug || 'kick chat',
    status: input.status,
    authStatus: input.authStatus,
    metrics: input.metrics,
    lastError: input.lastError,
    details: {
      latencyMs: input.lastLagMs ?? null,
      ...(input.stream
        ? {
            streamStatus: input.stream.online ? 'online' : 'offline',
            viewerCount: input.stream.online ? (input.stream.viewerCount ?? null) : null,
          }
        : {}),
      metadata: {
        ...(input.stream
          ? { title: input.stream.title ?? null, startedAt: input.stream.online ? (input.stream.startedAt ?? null) : null }
          : {}),
        channel: slug,
        delivery: 'webhook',
        subscriptions: input.subscriptions ?? [],
        lastWebhookLagMs: input.lastLagMs ?? null,
        lastEventAt: input.lastEventAt ?? null,
        ...(input.hint ? { howToConnect: input.hint } : {}),
      },
    },
  });
}
