import { Topic } from '../../core/index.js';
import { chatEgressStage, defineService } from '../../runtime/service.js';
import { createServiceIngress } from '../../runtime/ingress-buffer.js';
import { traced } from '../../runtime/tracing.js';
import { createTwitchAuthProvider } from '../../platforms/twitch/auth.js';
import { createTwitchChat } from '../../platforms/twitch/chat.js';
import { DeliveryReason, SendError, createReplySender, deliverEnvelopeReply, type ReplySender } from '../../platforms/twitch/egress.js';
import { normalizeChatMessage } from '../../platforms/twitch/normalize.js';
import { ConfigSchema, type Config } from './config.js';
import { createTwitchMetrics } from './metrics.js';
import { debugSnapshot, publishStatus, reportHealth, setupHint, type Running } from './status.js';

const CLAIM_TTL_MS = 24 * 60 * 60_000;

/**
 * Twitch in and out: chat messages from IRC become `external.chat.message.v1` envelopes on
 * internal.ingress.v1; replies arriving on egress go back as threaded, rate-limited chat messages; the
 * connector's state is published as `system.source.status` on every change and every heartbeat.
 */
export const service = defineService<Config>({
  name: 'ingress-egress',
  configSchema: ConfigSchema,
  needsStore: true,

  setup(ctx) {
    let running: Running | undefined;
    const unconfiguredSender = createUnconfiguredSender();
    const metrics = createTwitchMetrics(ctx.metrics);
    const egress = chatEgressStage('twitch', async (envelope, handler) => {
      const sender = running?.sender ?? unconfiguredSender;
      const outcome = await traced(
        'twitch chat send',
        { 'bitbrat.platform': 'twitch', 'messaging.destination.name': envelope.source.channel },
        async (span) => {
          const delivered = await deliverEnvelopeReply(envelope, sender, { signal: handler.signal });
          if (delivered.failure) span?.fail(delivered.failure.code, delivered.failure.message);
          span?.setAttributes({ 'bitbrat.reply.parts': delivered.result?.partsSent });
          return delivered;
        },
      );
      metrics.delivery(envelope, outcome);
      return outcome;
    });
    return {
      consumers: { [Topic.egress]: egress, 'internal.egress.{instanceId}.v1': egress },

      routes(app) {
        app.get('/_debug/twitch', async () => debugSnapshot(ctx, running));
      },

      async start() {
        const config = ctx.config;
        // Chat waits here, in order, while the bus refuses it; what cannot wait is counted as lost (INGRESS_BUFFER_MAX).
        const state: Running = { ingress: createServiceIngress(ctx, 'twitch'), status: Promise.resolve() };
        running = state;
        const [clientId, clientSecret, accessToken, refreshToken, broadcasterAccessToken, broadcasterRefreshToken] = await Promise.all(
          [
            'TWITCH_CLIENT_ID',
            'TWITCH_CLIENT_SECRET',
            'TWITCH_ACCESS_TOKEN',
            'TWITCH_REFRESH_TOKEN',
            'TWITCH_BROADCASTER_ACCESS_TOKEN',
            'TWITCH_BROADCASTER_REFRESH_TOKEN',
          ].map((name) => ctx.secrets.get(name)),
        );
        for (const secret of [clientSecret, accessToken, refreshToken, broadcasterAccessToken, broadcasterRefreshToken])
          ctx.registerSecret(secret);
        const auth = createTwitchAuthProvider({
          clientId,
          clientSecret,
          accessToken,
          refreshToken,
          store: ctx.store,
          registerSecret: (value) => ctx.registerSecret(value),
          onRefreshFailure: (error) => ctx.logger.warn({ err: error }, 'twitch token refresh failed'),
          logger: ctx.logger,
        });
        const botUsername = config.TWITCH_BOT_USERNAME ?? (await auth.storedLogin().catch(() => undefined));
        state.hint = setupHint({ ...config, TWITCH_BOT_USERNAME: botUsername }, await auth.hasToken().catch(() => false));

        if (config.TWITCH_CHANNELS.length > 0 && botUsername) {
          const connector = createTwitchChat({
            channels: config.TWITCH_CHANNELS,
            botUsername,
            auth,
            ircUrl: config.TWITCH_IRC_URL,
            reconnectInitialMs: config.IRC_RECONNECT_INITIAL_MS,
            reconnectMaxMs: config.IRC_RECONNECT_MAX_MS,
            tokenPollMs: config.SOURCE_HEARTBEAT_MS,
            logger: ctx.logger.child({ component: 'twitch-chat' }),
            onMessage(message) {
              metrics.received(message.channel);
              const envelope = normalizeChatMessage(message);
              state.ingress.push(envelope, `twitch:${envelope.message?.id || envelope.id}`);
            },
            onStateChange(snapshot) {
              metrics.state(snapshot);
              if (snapshot.status !== 'not_configured') state.hint = undefined;
              reportHealth(ctx, state, snapshot);
              void publishStatus(ctx, state);
            },
          });
          state.connector = connector;
          state.sender = createReplySender({
            transport: connector,
            beforeSend: async (request) => (request.key ? await ctx.store.claimKey('twitch-egress', request.key, CLAIM_TTL_MS) : true),
          });
          metrics.watchQueue(state.sender);
          ctx.health.set('twitch', false, 'twitch chat connecting', { configured: true });
          connector.start();
        } else {
          reportHealth(ctx, state, undefined);
          void publishStatus(ctx, state);
        }

        state.heartbeat = setInterval(() => {
          void (async () => {
            await state.connector?.measureLatency(Math.min(5_000, config.SOURCE_HEARTBEAT_MS)).catch(() => undefined);
            await publishStatus(ctx, state);
          })();
        }, config.SOURCE_HEARTBEAT_MS);
        state.heartbeat.unref();

        if (config.TWITCH_EVENTSUB_ENABLED && (!clientId || !clientSecret)) {
          ctx.health.set('eventsub', true, 'twitch eventsub is not configured: set the TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET secrets', {
            configured: false,
          });
        } else if (config.TWITCH_EVENTSUB_ENABLED) {
          // In the background: EventSub resolves the broadcaster over Helix, which must not hold up chat.
          // Loaded here, not at start-up: EventSub pulls in Twurple, which an unconfigured platform never needs.
          state.eventsubStarting = import('../../platforms/twitch/connect-eventsub.js')
            .then(({ connectTwitchEventSub }) =>
              connectTwitchEventSub({
                clientId,
                clientSecret,
                bot: auth,
                broadcasterSeed: { accessToken: broadcasterAccessToken, refreshToken: broadcasterRefreshToken },
                channels: config.TWITCH_CHANNELS,
                store: ctx.store,
                publish: (envelope, msgId) => {
                  metrics.eventsub(envelope);
                  return ctx.publish(Topic.ingress, envelope, msgId ? { msgId } : undefined);
                },
                logger: ctx.logger.child({ component: 'eventsub' }),
                health: (ready, detail, configured) => ctx.health.set('eventsub', ready, detail, { configured }),
                registerSecret: (value) => ctx.registerSecret(value),
                streamPollMs: config.STREAM_POLL_MS,
                rescanMs: config.SOURCE_HEARTBEAT_MS,
                tracing: ctx.tracing,
              }),
            )
            .then((handle) => {
              state.eventsub = handle;
            });
        } else {
          ctx.health.set('eventsub', true, 'twitch eventsub is off (TWITCH_EVENTSUB_ENABLED=false)', { configured: false });
        }
      },

      async stop() {
        unconfiguredSender.close();
        metrics.stop();
        const state = running;
        if (!state) return;
        if (state.heartbeat) clearInterval(state.heartbeat);
        state.sender?.close();
        await state.eventsubStarting;
        await state.eventsub?.stop().catch((error: unknown) => ctx.logger.warn({ err: error }, 'eventsub stop failed'));
        await state.connector?.stop();
        await state.ingress.close();
        await state.status;
        running = undefined;
      },
    };
  },
});

/** Egress while chat is not configured: a twitch reply is recorded as not delivered (NOT_CONFIGURED). */
function createUnconfiguredSender(): ReplySender {
  return createReplySender({
    transport: {
      send: async () => {
        throw new SendError(DeliveryReason.NOT_CONFIGURED, 'twitch chat is not configured on this instance');
      },
      isPrivileged: () => false,
    },
  });
}

export default service;
