import { Topic, type Envelope } from '../../core/index.js';
import { startEventSub } from '../../platforms/twitch/eventsub.js';
import { TwitchTokenId, loadTwitchAuth, safeTwitchErrorMessage } from '../../platforms/twitch/token-store.js';
import type { Ctx } from './config.js';
import type { EventSubAttachment } from './status.js';

/**
 * The EventSub hook (src/platforms/twitch/eventsub.ts): connects with the broadcaster's stored token and
 * publishes follows, stream online/offline, … to ingress. Reports its own `eventsub` health component.
 */
export async function attachEventSub(ctx: Ctx, credentials: { clientId?: string; clientSecret?: string }, onNotification?: (envelope: Envelope) => void): Promise<EventSubAttachment | undefined> {
  const notConfigured = (why: string) => {
    ctx.health.set('eventsub', true, `twitch eventsub is not configured: ${why}`, { configured: false });
    return undefined;
  };
  if (!credentials.clientId || !credentials.clientSecret) return notConfigured('set the TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET secrets');
  const logger = ctx.logger.child({ component: 'eventsub' });
  try {
    const loaded = await loadTwitchAuth({ store: ctx.store, clientId: credentials.clientId, clientSecret: credentials.clientSecret, ids: [TwitchTokenId.broadcaster], logger });
    const broadcaster = loaded.users[TwitchTokenId.broadcaster];
    if (!broadcaster) return notConfigured('connect the broadcaster account at /oauth/twitch/start?identity=broadcaster');
    ctx.health.set('eventsub', false, 'twitch eventsub connecting', { configured: true });
    return await startEventSub({
      authProvider: loaded.authProvider,
      clientId: credentials.clientId,
      broadcasterId: broadcaster.userId,
      broadcasterLogin: ctx.config.TWITCH_BROADCASTER_LOGIN ?? broadcaster.login,
      store: ctx.store,
      publish: (envelope, msgId) => {
        onNotification?.(envelope);
        return ctx.publish(Topic.ingress, envelope, msgId ? { msgId } : undefined);
      },
      logger,
      onState: (eventsub) => ctx.health.set('eventsub', eventsub.status === 'connected', eventsub.detail ?? `twitch eventsub ${eventsub.status}`, { configured: true }),
    });
  } catch (error) {
    const message = safeTwitchErrorMessage(error);
    logger.error({ error: message }, 'twitch eventsub could not start');
    ctx.health.set('eventsub', false, `twitch eventsub could not start: ${message}`, { configured: true });
    return undefined;
  }
}
