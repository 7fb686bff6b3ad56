import { Topic } from '../../core/index.js';
import type { TwitchChatConnector, TwitchChatSnapshot } from '../../platforms/twitch/chat.js';
import type { ReplySender } from '../../platforms/twitch/egress.js';
import { buildSourceStatusEnvelope, sourceStatusPatch } from '../../platforms/twitch/normalize.js';
import type { IngressBuffer } from '../../runtime/ingress-buffer.js';
import type { Config, Ctx } from './config.js';

/** What one ingress-egress instance holds while it runs. */
export interface Running {
  connector?: TwitchChatConnector;
  sender?: ReplySender;
  hint?: string;
  heartbeat?: NodeJS.Timeout;
  /** Chat messages on their way to the bus; bounded, and every loss counted. */
  ingress: IngressBuffer;
  status: Promise<void>;
  eventsub?: EventSubAttachment;
  eventsubStarting?: Promise<void>;
}

/** A running EventSub connection, as the service sees it. */
export interface EventSubAttachment {
  stop(): Promise<void>;
  snapshot(): unknown;
}
/** What is missing before chat can connect, in words an operator can act on. */
export function setupHint(config: Config, hasToken: boolean): string | undefined {
  const missing: string[] = [];
  if (config.TWITCH_CHANNELS.length === 0) missing.push('set TWITCH_CHANNELS (comma-separated channel logins)');
  if (!config.TWITCH_BOT_USERNAME) missing.push('set TWITCH_BOT_USERNAME');
  if (!hasToken)
    missing.push('connect the bot account: run the OAuth flow at /oauth/twitch/start?identity=bot (or set the TWITCH_ACCESS_TOKEN secret)');
  return missing.length ? `twitch chat is not configured: ${missing.join('; ')}` : undefined;
}

/** Sets the `twitch` health component from the connector's state. */
export function reportHealth(ctx: Ctx, state: Running, snapshot: TwitchChatSnapshot | undefined): void {
  if (!snapshot || snapshot.status === 'not_configured') {
    const hint = state.hint ?? setupHint(ctx.config, false) ?? 'twitch chat is not configured';
    ctx.health.set('twitch', true, hint, { configured: false });
    return;
  }
  if (snapshot.status === 'connected') {
    ctx.health.set('twitch', true, `connected to ${snapshot.joinedChannels.map((channel) => `#${channel}`).join(', ')}`, {
      configured: true,
    });
    return;
  }
  const why = snapshot.lastError ? `: ${snapshot.lastError.message}` : '';
  const retry = snapshot.nextReconnectAt ? `; retrying at ${snapshot.nextReconnectAt}` : '';
  ctx.health.set('twitch', false, `twitch chat ${snapshot.status}${why}${retry}`, { configured: true });
}

/** Publishes one `system.source.status` per channel (serialized; failures are logged, never thrown). */
export function publishStatus(ctx: Ctx, state: Running): Promise<void> {
  const snapshot = state.connector?.snapshot();
  const channels = snapshot?.channels.length ? snapshot.channels : ctx.config.TWITCH_CHANNELS.length ? ctx.config.TWITCH_CHANNELS : [''];
  const at = new Date();
  const envelopes = channels.map((channel) => {
    const counters = snapshot?.perChannel[channel];
    return buildSourceStatusEnvelope({
      channel,
      channelId: counters?.roomId,
      displayName: channel || ctx.config.TWITCH_BOT_USERNAME,
      status: snapshot?.status ?? 'not_configured',
      metrics: {
        messagesIn: counters?.messagesIn ?? 0,
        messagesOut: counters?.messagesOut ?? 0,
        errors: snapshot?.counters.errors ?? 0,
        reconnects: snapshot?.counters.reconnects ?? 0,
        lost: state.ingress.lost,
      },
      authStatus: snapshot?.authStatus ?? 'missing',
      permissions: snapshot?.permissions[channel],
      latencyMs: snapshot?.latencyMs ?? null,
      lastError: snapshot?.lastError ?? null,
      at,
    });
  });
  state.status = state.status.then(async () => {
    for (const envelope of envelopes) {
      // The record follows the connection at once; persistence may be behind a backlog of chat on ingress.
      await ctx.store
        .mergeSource(sourceStatusPatch(envelope))
        .catch((error: unknown) => ctx.logger.warn({ err: error, sourceId: envelope.payload.sourceId }, 'could not write source status'));
      await ctx
        .publish(Topic.ingress, envelope)
        .catch((error: unknown) => ctx.logger.warn({ err: error, sourceId: envelope.payload.sourceId }, 'could not publish source status'));
    }
  });
  return state.status;
}

/** The debug view: connector state, egress queues, EventSub; never a token. */
export function debugSnapshot(ctx: Ctx, state: Running | undefined): Record<string, unknown> {
  const chat = state?.connector?.snapshot();
  return {
    ...(chat ?? { status: 'not_configured', configured: false, channels: ctx.config.TWITCH_CHANNELS }),
    ...(state?.hint && (!chat || chat.status === 'not_configured') ? { hint: state.hint } : {}),
    heartbeatMs: ctx.config.SOURCE_HEARTBEAT_MS,
    reconnectPolicy: { initialMs: ctx.config.IRC_RECONNECT_INITIAL_MS, maxMs: ctx.config.IRC_RECONNECT_MAX_MS },
    ingest: state ? state.ingress.snapshot() : null,
    egress: state?.sender ? { limits: state.sender.limits, channels: state.sender.snapshot() } : null,
    eventsub: state?.eventsub?.snapshot() ?? null,
  };
}
