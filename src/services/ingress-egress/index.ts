import { z } from 'zod';
import { Topic, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { continueWith, defineService, failed, type HandlerContext, type ServiceContext } from '../../runtime/service.js';
import { createTwitchAuthProvider } from '../../platforms/twitch/auth.js';
import { createTwitchChat, type TwitchChatConnector, type TwitchChatSnapshot } from '../../platforms/twitch/chat.js';
import { DeliveryReason, SendError, createReplySender, deliverEnvelopeReply, type ReplySender } from '../../platforms/twitch/egress.js';
import { connectTwitchEventSub } from '../../platforms/twitch/connect-eventsub.js';
import { buildSourceStatusEnvelope, normalizeChatMessage, sourceStatusPatch } from '../../platforms/twitch/normalize.js';
import { DEFAULT_STREAM_POLL_MS } from '../../platforms/twitch/stream-status.js';

const ConfigSchema = z.object({
  TWITCH_BOT_USERNAME: env.string(),
  TWITCH_CHANNELS: env.csv(),
  /** e.g. ws://127.0.0.1:7000 (a local fake); default Twitch's wss endpoint. */
  TWITCH_IRC_URL: env.url(),
  TWITCH_BROADCASTER_LOGIN: env.string(),
  IRC_RECONNECT_INITIAL_MS: env.int(1_000, { min: 1 }),
  IRC_RECONNECT_MAX_MS: env.int(30_000, { min: 1 }),
  SOURCE_HEARTBEAT_MS: env.int(30_000, { min: 50 }),
  /** EventSub runs whenever Twitch credentials exist; `false` turns it off. */
  TWITCH_EVENTSUB_ENABLED: env.bool(true),
  /** How often stream title, game, viewers and start time are refreshed from Helix (ms). */
  STREAM_POLL_MS: env.int(DEFAULT_STREAM_POLL_MS, { min: 50 }),
});
type Config = z.infer<typeof ConfigSchema>;
type Ctx = ServiceContext<Config>;

/** Per-host state (a definition can be hosted more than once in one process, e.g. in tests). */
interface Running {
  connector?: TwitchChatConnector;
  sender?: ReplySender;
  hint?: string;
  heartbeat?: NodeJS.Timeout;
  ingest: Promise<void>;
  /** Chat messages waiting for the bus; bounded so a long bus outage cannot exhaust memory. */
  ingestPending: number;
  /** Messages refused because the bound was reached (each one logged). */
  ingestDropped: number;
  status: Promise<void>;
  eventsub?: EventSubAttachment;
  eventsubStarting?: Promise<void>;
}

interface EventSubAttachment {
  stop(): Promise<void>;
  snapshot(): unknown;
}
const running = new WeakMap<object, Running>();

const CLAIM_TTL_MS = 24 * 60 * 60_000;
/** Chat messages allowed to wait for the bus before new ones are refused (about 10 s at 2 000/s). */
const MAX_INGEST_PENDING = 20_000;

/** What is missing before chat can connect, in words an operator can act on. */
function setupHint(config: Config, hasToken: boolean): string | undefined {
  const missing: string[] = [];
  if (config.TWITCH_CHANNELS.length === 0) missing.push('set TWITCH_CHANNELS (comma-separated channel logins)');
  if (!config.TWITCH_BOT_USERNAME) missing.push('set TWITCH_BOT_USERNAME');
  if (!hasToken) missing.push('connect the bot account: run the OAuth flow at /oauth/twitch/start?identity=bot (or set the TWITCH_ACCESS_TOKEN secret)');
  return missing.length ? `twitch chat is not configured: ${missing.join('; ')}` : undefined;
}

function reportHealth(ctx: Ctx, state: Running, snapshot: TwitchChatSnapshot | undefined): void {
  if (!snapshot || snapshot.status === 'not_configured') {
    const hint = state.hint ?? setupHint(ctx.config, false) ?? 'twitch chat is not configured';
    ctx.health.set('twitch', true, hint, { configured: false });
    return;
  }
  if (snapshot.status === 'connected') {
    ctx.health.set('twitch', true, `connected to ${snapshot.joinedChannels.map((channel) => `#${channel}`).join(', ')}`, { configured: true });
    return;
  }
  const why = snapshot.lastError ? `: ${snapshot.lastError.message}` : '';
  const retry = snapshot.nextReconnectAt ? `; retrying at ${snapshot.nextReconnectAt}` : '';
  ctx.health.set('twitch', false, `twitch chat ${snapshot.status}${why}${retry}`, { configured: true });
}

/** Publishes one `system.source.status` per channel (serialized; failures are logged, never thrown). */
function publishStatus(ctx: Ctx, state: Running): Promise<void> {
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
      await ctx.store.mergeSource(sourceStatusPatch(envelope)).catch((error: unknown) => ctx.logger.warn({ err: error, sourceId: envelope.payload.sourceId }, 'could not write source status'));
      await ctx.publish(Topic.ingress, envelope).catch((error: unknown) => ctx.logger.warn({ err: error, sourceId: envelope.payload.sourceId }, 'could not publish source status'));
    }
  });
  return state.status;
}

/** The debug view: connector state, egress queues, EventSub; never a token. */
function debugSnapshot(ctx: Ctx, state: Running | undefined): Record<string, unknown> {
  const chat = state?.connector?.snapshot();
  return {
    ...(chat ?? { status: 'not_configured', configured: false, channels: ctx.config.TWITCH_CHANNELS }),
    ...(state?.hint && (!chat || chat.status === 'not_configured') ? { hint: state.hint } : {}),
    heartbeatMs: ctx.config.SOURCE_HEARTBEAT_MS,
    reconnectPolicy: { initialMs: ctx.config.IRC_RECONNECT_INITIAL_MS, maxMs: ctx.config.IRC_RECONNECT_MAX_MS },
    ingest: state ? { pending: state.ingestPending, dropped: state.ingestDropped } : null,
    egress: state?.sender ? { limits: state.sender.limits, channels: state.sender.snapshot() } : null,
    eventsub: state?.eventsub?.snapshot() ?? null,
  };
}

/**
 * Twitch in and out: chat messages from IRC become `external.chat.message.v1` envelopes on
 * internal.ingress.v1; replies arriving on egress go back as threaded, rate-limited chat messages; the
 * connector's state is published as `system.source.status` on every change and every heartbeat.
 */
export const service = defineService({
  name: 'ingress-egress',
  configSchema: ConfigSchema,
  needsStore: true,

  consumers(ctx) {
    // Deliver, record `delivery`, and hand on to finalization; a reply that could not go out fails the
    // stage (errors[] + outcome failed) with the envelope's delivery saying why.
    const egress = {
      mode: 'stage' as const,
      next: 'finalization',
      // A reply may wait for the rate limiter up to its deadline; keep the bus from redelivering meanwhile.
      ackWaitMs: 120_000,
      platforms: ['twitch'],
      async handle(envelope: Envelope, handler: HandlerContext) {
        const sender = running.get(ctx)?.sender ?? unconfiguredSender;
        const outcome = await deliverEnvelopeReply(envelope, sender, { signal: handler.signal });
        if (outcome.failure) return failed(outcome.failure.code, outcome.failure.message, { envelope: outcome.envelope, retryable: false });
        return continueWith(outcome.envelope);
      },
    };
    return { [Topic.egress]: egress, 'internal.egress.{instanceId}.v1': egress };
  },

  routes(app, ctx) {
    app.get('/_debug/twitch', async () => debugSnapshot(ctx, running.get(ctx)));
  },

  async start(ctx) {
    const config = ctx.config;
    const state: Running = { ingest: Promise.resolve(), ingestPending: 0, ingestDropped: 0, status: Promise.resolve() };
    running.set(ctx, state);
    const [clientId, clientSecret, accessToken, refreshToken, broadcasterAccessToken, broadcasterRefreshToken] = await Promise.all(
      ['TWITCH_CLIENT_ID', 'TWITCH_CLIENT_SECRET', 'TWITCH_ACCESS_TOKEN', 'TWITCH_REFRESH_TOKEN', 'TWITCH_BROADCASTER_ACCESS_TOKEN', 'TWITCH_BROADCASTER_REFRESH_TOKEN'].map((name) => ctx.secrets.get(name)),
    );
    for (const secret of [clientSecret, accessToken, refreshToken, broadcasterAccessToken, broadcasterRefreshToken]) ctx.registerSecret(secret);
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
          const envelope = normalizeChatMessage(message);
          const msgId = `twitch:${envelope.message?.id || envelope.id}`;
          if (state.ingestPending >= MAX_INGEST_PENDING) {
            state.ingestDropped += 1;
            ctx.logger.error({ messageId: envelope.message?.id, channel: envelope.source.channel, pending: state.ingestPending }, 'ingress backlog full (bus unavailable?); chat message dropped');
            return;
          }
          state.ingestPending += 1;
          // One chain keeps chat order on the bus; ctx.publish retries before it gives up.
          state.ingest = state.ingest
            .then(() => ctx.publish(Topic.ingress, envelope, { msgId }))
            .catch((error: unknown) =>
              ctx.logger.error({ err: error, messageId: envelope.message?.id, channel: envelope.source.channel }, 'chat message could not be published to ingress; it is lost'),
            )
            .finally(() => {
              state.ingestPending -= 1;
            });
        },
        onStateChange(snapshot) {
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

    if (config.TWITCH_EVENTSUB_ENABLED) {
      // In the background: EventSub resolves the broadcaster over Helix, which must not hold up chat.
      state.eventsubStarting = connectTwitchEventSub({
        clientId,
        clientSecret,
        bot: auth,
        broadcasterSeed: { accessToken: broadcasterAccessToken, refreshToken: broadcasterRefreshToken },
        channels: config.TWITCH_CHANNELS,
        store: ctx.store,
        publish: (envelope, msgId) => ctx.publish(Topic.ingress, envelope, msgId ? { msgId } : undefined),
        logger: ctx.logger.child({ component: 'eventsub' }),
        health: (ready, detail, configured) => ctx.health.set('eventsub', ready, detail, { configured }),
        registerSecret: (value) => ctx.registerSecret(value),
        streamPollMs: config.STREAM_POLL_MS,
        rescanMs: config.SOURCE_HEARTBEAT_MS,
      }).then((handle) => {
        state.eventsub = handle;
      });
    } else {
      ctx.health.set('eventsub', true, 'twitch eventsub is off (TWITCH_EVENTSUB_ENABLED=false)', { configured: false });
    }
  },

  async stop(ctx) {
    const state = running.get(ctx);
    if (!state) return;
    if (state.heartbeat) clearInterval(state.heartbeat);
    state.sender?.close();
    await state.eventsubStarting;
    await state.eventsub?.stop().catch((error: unknown) => ctx.logger.warn({ err: error }, 'eventsub stop failed'));
    await state.connector?.stop();
    await state.ingest;
    await state.status;
    running.delete(ctx);
  },
});

/** Egress while chat is not configured: a twitch reply is recorded as not delivered (NOT_CONFIGURED). */
const unconfiguredSender = createReplySender({
  transport: {
    send: async () => {
      throw new SendError(DeliveryReason.NOT_CONFIGURED, 'twitch chat is not configured on this instance');
    },
    isPrivileged: () => false,
  },
});

export default service;
