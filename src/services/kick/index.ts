import type { KeyObject } from 'node:crypto';
import { Histogram } from 'prom-client';
import { Topic, instanceEgressTopic } from '../../core/index.js';
import { createServiceIngress } from '../../runtime/ingress-buffer.js';
import { chatEgressStage, defineService } from '../../runtime/service.js';
import {
  KickTokenId,
  buildKickStatusEnvelope,
  createKickClient,
  createKickReplySender,
  createKickTokens,
  deliverKickReply,
  kickChannelName,
  normalizeKickDelivery,
  parseKickPublicKey,
  reconcileKickSubscriptions,
  verifyKickWebhook,
  type KickClient,
  type KickReplySender,
  type KickTokens,
} from '../../platforms/kick/index.js';
import { ConfigSchema, type Config } from './config.js';

const SERVICE = 'kick';
export const KICK_WEBHOOK_PATH = '/webhooks/kick';
/** Message ids are claimed this long: Kick retries a delivery for minutes, never for a day. */
const DEDUP_TTL_MS = 24 * 60 * 60_000;
const EGRESS_CLAIM_TTL_MS = 24 * 60 * 60_000;
/** The webhook lag histogram (Kick's time of the event → arrival here). */
export const KICK_LAG_METRIC = 'bitbrat_kick_webhook_lag_seconds';

type Status = 'connected' | 'connecting' | 'error' | 'not_configured';
interface ChannelState {
  slug: string;
  broadcasterUserId?: number;
  messagesIn: number;
  messagesOut: number;
  subscriptions: string[];
  lastLagMs: number | null;
  lastEventAt: string | null;
  stream?: { online: boolean; title?: string; startedAt?: string; viewerCount?: number };
}

/** What an operator must do before Kick works, in words they can act on; undefined when nothing. */
export function kickSetupHint(config: Pick<Config, 'KICK_CHANNELS' | 'KICK_CLIENT_ID'>, hasToken: boolean): string | undefined {
  const missing: string[] = [];
  if (config.KICK_CHANNELS.length === 0) missing.push('set KICK_CHANNELS (comma-separated channel slugs)');
  if (!hasToken)
    missing.push(
      'connect an account at /oauth/kick/start?identity=bot (needs KICK_CLIENT_ID and the KICK_CLIENT_SECRET secret), or set the KICK_ACCESS_TOKEN secret',
    );
  if (!config.KICK_CLIENT_ID) missing.push('set KICK_CLIENT_ID (and the KICK_CLIENT_SECRET secret) so tokens can be refreshed');
  return missing.length > 0 ? `Kick is not configured: ${missing.join('; ')}` : undefined;
}

/**
 * Kick in and out: events arrive by signed webhook at `POST /webhooks/kick` (chat → `external.chat.message.v1`,
 * follows and subs → `kick.event.v1`, stream status → `system.stream.online/offline`), replies go back through
 * `POST /public/v1/chat` threaded to the message, and each channel is a `kick:<slug>` source. At start the
 * webhook subscriptions are reconciled with the configured channels.
 */
export const service = defineService<Config>({
  name: SERVICE,
  configSchema: ConfigSchema,
  needsStore: true,
  setup(ctx) {
    const config = ctx.config;
    const lag =
      (ctx.metrics.registry.getSingleMetric(KICK_LAG_METRIC) as Histogram<'event'> | undefined) ??
      new Histogram({
        name: KICK_LAG_METRIC,
        help: "Kick webhook lag: the event's own time (created_at, else Kick's send time) to its arrival here.",
        labelNames: ['event'] as const,
        buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
        registers: [ctx.metrics.registry],
      });
    const channels = new Map<string, ChannelState>(
      config.KICK_CHANNELS.map((slug) => [
        kickChannelName(slug),
        { slug: kickChannelName(slug), messagesIn: 0, messagesOut: 0, subscriptions: [], lastLagMs: null, lastEventAt: null },
      ]),
    );
    const egressTopic = instanceEgressTopic(ctx.instanceId);
    let status: Status = 'not_configured';
    let authStatus: 'valid' | 'missing' | 'invalid' | 'unknown' = 'missing';
    let hint: string | undefined = kickSetupHint(config, false);
    let lastError: { code: string; message: string; at: string } | null = null;
    let errors = 0;
    let tokens: KickTokens | undefined;
    let sender: KickReplySender | undefined;
    let publicKey: KeyObject | undefined = config.KICK_PUBLIC_KEY ? parseKickPublicKey(config.KICK_PUBLIC_KEY) : undefined;
    let heartbeat: NodeJS.Timeout | undefined;
    let statusChain: Promise<void> = Promise.resolve();
    // Webhook events wait here, in order, while the bus refuses them; when it is full Kick is answered 503
    // and retries, so nothing is lost then (INGRESS_BUFFER_MAX).
    const ingress = createServiceIngress(ctx, SERVICE);
    let connecting: Promise<void> | undefined;
    let stopped = false;
    /** The bot account's Kick user id, once known (its own chat messages are not processed). */
    let botUserId: string | undefined;
    /** One connection attempt at a time. */
    let busy = false;
    const background = (attempt: () => Promise<void>) => {
      busy = true;
      connecting = attempt()
        .catch((error: unknown) => recordError('PROVIDER_ERROR', error))
        .finally(() => {
          busy = false;
        });
    };

    /** A configured channel's state; an event of any other channel gets a detached one (never a new source). */
    const channelState = (slug: string): ChannelState => {
      const name = kickChannelName(slug);
      return channels.get(name) ?? { slug: name, messagesIn: 0, messagesOut: 0, subscriptions: [], lastLagMs: null, lastEventAt: null };
    };

    const reportHealth = () => {
      if (status === 'not_configured') return ctx.health.set('kick', true, hint ?? 'Kick is not configured', { configured: false });
      if (status === 'connected')
        return ctx.health.set('kick', true, `Kick webhooks subscribed for ${[...channels.keys()].join(', ')}`, { configured: true });
      ctx.health.set('kick', false, `Kick ${status}${lastError ? `: ${lastError.message}` : ''}`, { configured: true });
    };

    const publishStatus = (): Promise<void> => {
      const at = new Date();
      const list =
        channels.size > 0
          ? [...channels.values()]
          : [{ slug: '', messagesIn: 0, messagesOut: 0, subscriptions: [], lastLagMs: null, lastEventAt: null } as ChannelState];
      const envelopes = list.map((channel) =>
        buildKickStatusEnvelope({
          slug: channel.slug,
          ...(channel.broadcasterUserId ? { broadcasterUserId: String(channel.broadcasterUserId) } : {}),
          status,
          authStatus,
          metrics: { messagesIn: channel.messagesIn, messagesOut: channel.messagesOut, errors, reconnects: 0, lost: ingress.lost },
          lastError,
          subscriptions: channel.subscriptions,
          lastLagMs: channel.lastLagMs,
          lastEventAt: channel.lastEventAt,
          ...(channel.stream ? { stream: channel.stream } : {}),
          ...(status === 'not_configured' && hint ? { hint } : {}),
          at,
        }),
      );
      statusChain = statusChain.then(async () => {
        for (const envelope of envelopes)
          await ctx
            .publish(Topic.ingress, envelope)
            .catch((error: unknown) => ctx.logger.warn({ err: error }, 'could not publish the Kick source status'));
      });
      return statusChain;
    };

    const recordError = (code: string, error: unknown) => {
      errors += 1;
      const message = error instanceof Error ? error.message : String(error);
      lastError = { code, message, at: new Date().toISOString() };
      ctx.logger.warn({ code, error: message }, 'kick connector error');
    };

    /** A client calling with `id`'s token (falling back to the other identity), refreshing once on a 401. */
    const clientFor = (prefer: KickTokenId): KickClient => {
      const other = prefer === KickTokenId.bot ? KickTokenId.broadcaster : KickTokenId.bot;
      let using: KickTokenId = prefer;
      return createKickClient({
        apiUrl: config.KICK_API_URL,
        tracing: ctx.tracing,
        async accessToken() {
          const token = (await tokens!.accessToken(prefer)) ?? (await tokens!.accessToken(other));
          using = (await tokens!.get(prefer)) ? prefer : other;
          if (!token) throw new Error(`no Kick token stored; connect an account at /oauth/kick/start?identity=${prefer}`);
          return token;
        },
        onUnauthorized: async (stale) => await tokens!.refresh(using, stale),
      });
    };

    const loadPublicKey = async (): Promise<KeyObject | undefined> => {
      if (publicKey) return publicKey;
      const anonymous = createKickClient({ apiUrl: config.KICK_API_URL, accessToken: async () => '', tracing: ctx.tracing });
      publicKey = parseKickPublicKey(await anonymous.getPublicKey());
      return publicKey;
    };

    /** The bot's Kick user id; a token seeded from the secrets has none stored, so it is asked once and kept. */
    const learnBotUser = async (): Promise<string | undefined> => {
      const stored = await tokens!.get(KickTokenId.bot);
      if (!stored || stored.userId) return stored?.userId;
      const [user] = await clientFor(KickTokenId.bot).getUsers();
      if (!user) return undefined;
      const { version, ...rest } = stored;
      await ctx.store.updateTokenIf(version, { ...rest, userId: String(user.user_id), login: user.name });
      return String(user.user_id);
    };

    /** Resolves the channels, publishes their stream state and reconciles the webhook subscriptions. */
    const connect = async (): Promise<void> => {
      status = 'connecting';
      reportHealth();
      try {
        const events = clientFor(KickTokenId.broadcaster);
        botUserId = await learnBotUser();
        const found = await events.getChannels([...channels.keys()]);
        authStatus = 'valid';
        for (const channel of found) {
          const state = channelState(channel.slug);
          state.broadcasterUserId = channel.broadcaster_user_id;
          const online = channel.stream?.is_live === true;
          // Carried by every status of the source (not a one-off event), so it is never lost to a restart.
          state.stream = {
            online,
            ...(channel.stream_title ? { title: channel.stream_title } : {}),
            ...(online && channel.stream?.start_time ? { startedAt: channel.stream.start_time } : {}),
            ...(online && typeof channel.stream?.viewer_count === 'number' ? { viewerCount: channel.stream.viewer_count } : {}),
          };
        }
        const unknown = [...channels.values()].filter((channel) => !channel.broadcasterUserId).map((channel) => channel.slug);
        if (unknown.length > 0) recordError('NOT_FOUND', new Error(`Kick has no channel ${unknown.join(', ')}`));
        const ids = [...channels.values()].flatMap((channel) => (channel.broadcasterUserId ? [channel.broadcasterUserId] : []));
        const reconciled = await reconcileKickSubscriptions(events, ids);
        for (const channel of channels.values())
          channel.subscriptions = channel.broadcasterUserId ? (reconciled.active[String(channel.broadcasterUserId)] ?? []) : [];
        for (const refused of reconciled.errors)
          recordError('SUBSCRIBE_FAILED', new Error(`Kick refused ${refused.event} for ${refused.broadcasterUserId}: ${refused.error}`));
        ctx.logger.info(
          { created: reconciled.created.length, deleted: reconciled.deleted.length, kept: reconciled.kept.length },
          'kick webhook subscriptions reconciled',
        );
        await loadPublicKey().catch((error: unknown) => recordError('PUBLIC_KEY', error));
        status = reconciled.errors.length === 0 && unknown.length === 0 ? 'connected' : 'error';
        if (status === 'connected') lastError = null;
      } catch (error) {
        const code = (error as { status?: number }).status === 401 ? 'AUTH_FAILED' : 'PROVIDER_ERROR';
        if (code === 'AUTH_FAILED') authStatus = 'invalid';
        recordError(code, error);
        status = 'error';
      }
      reportHealth();
      await publishStatus();
    };

    const egress = chatEgressStage('kick', async (envelope, handler) => {
      const outcome = await deliverKickReply(envelope, sender, {
        signal: handler.signal,
        notConfigured: hint ?? 'Kick chat is not configured',
      });
      if (outcome.envelope.delivery?.delivered)
        channelState(envelope.source.channel).messagesOut += outcome.envelope.delivery.platformMessageIds?.length ?? 1;
      return outcome;
    });

    return {
      consumers: { 'internal.egress.{instanceId}.v1': egress },

      routes(app) {
        // The signature covers the exact bytes Kick sent, so this route keeps the raw body (its own scope:
        // other routes still get parsed JSON).
        app.register(async (scope) => {
          scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
          scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
          scope.post(KICK_WEBHOOK_PATH, async (request, reply) => {
            const rawBody = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
            // Unconfigured, nothing is fetched from Kick on a stranger's request.
            if (!publicKey && status === 'not_configured')
              return reply.status(503).send({ error: 'NOT_CONFIGURED', message: hint ?? 'Kick is not configured' });
            const key = await loadPublicKey().catch((error: unknown) => {
              recordError('PUBLIC_KEY', error);
              return undefined;
            });
            if (!key)
              return reply.status(503).send({
                error: 'NOT_CONFIGURED',
                message: 'the Kick webhook public key is not available yet (set KICK_PUBLIC_KEY or let it be fetched from Kick)',
              });
            const verdict = verifyKickWebhook({ key, headers: request.headers, rawBody, maxAgeMs: config.KICK_WEBHOOK_MAX_AGE_MS });
            if (!verdict.ok) {
              ctx.logger.warn({ status: verdict.status, reason: verdict.message }, 'kick webhook refused');
              return reply.status(verdict.status).send({ error: verdict.code, message: verdict.message });
            }
            const { headers } = verdict;
            let payload: Record<string, unknown>;
            try {
              payload = JSON.parse(rawBody.toString('utf8')) as Record<string, unknown>;
            } catch {
              return reply.status(400).send({ error: 'BAD_REQUEST', message: 'the body is not JSON' });
            }
            if (!payload || typeof payload !== 'object' || Array.isArray(payload))
              return reply.status(400).send({ error: 'BAD_REQUEST', message: 'the body must be a JSON object' });
            // Kick echoes the bot's own chat messages back as webhooks; Twitch chat does not, so they stop here.
            const sender = (payload.sender as { user_id?: unknown } | undefined)?.user_id;
            if (headers.eventType === 'chat.message.sent' && botUserId !== undefined && String(sender) === botUserId)
              return reply.status(200).send({ ok: true, ignored: 'own message' });
            const receivedAt = new Date();
            const normalized = normalizeKickDelivery(payload, {
              eventType: headers.eventType,
              eventVersion: headers.eventVersion,
              messageId: headers.messageId,
              receivedAt,
              sentAt: headers.sentAt,
              egressDestination: egressTopic,
            });
            // Room in the buffer is held before the message id is claimed: a full buffer answers 503 with the
            // id still unclaimed, so Kick's retry of it is taken once there is room again.
            const room = ingress.reserve(normalized.envelopes.length);
            if (!room) {
              recordError(
                'INGRESS_FULL',
                new Error(`the ingress buffer is full (INGRESS_BUFFER_MAX=${ctx.platform.INGRESS_BUFFER_MAX}); Kick will retry`),
              );
              return reply.status(503).send({ error: 'BUS_UNAVAILABLE', message: 'the event could not be handed to the bus; retry later' });
            }
            // Kick delivers at least once: a message id is processed once, also after a restart (the claim is in the store).
            let claimed: boolean;
            try {
              claimed = await ctx.store.claimKey('kick-webhook', headers.messageId, DEDUP_TTL_MS);
            } catch (error) {
              // The store is out: nothing is claimed or queued, so Kick's retry brings the event back.
              room.release();
              recordError('STORE_UNAVAILABLE', error);
              return reply
                .status(503)
                .send({ error: 'STORE_UNAVAILABLE', message: 'the event could not be checked for duplicates; retry later' });
            }
            if (!claimed) {
              room.release();
              return reply.status(200).send({ ok: true, duplicate: true });
            }
            const lagMs = Math.max(0, receivedAt.getTime() - (normalized.occurredAt ?? headers.sentAt).getTime());
            lag.observe({ event: headers.eventType }, lagMs / 1000);
            const channel = channelState(normalized.channel);
            channel.messagesIn += 1;
            channel.lastLagMs = lagMs;
            channel.lastEventAt = receivedAt.toISOString();
            for (const envelope of normalized.envelopes) {
              if (envelope.type !== 'system.stream.online' && envelope.type !== 'system.stream.offline') continue;
              const payload = envelope.payload as { streamStatus: string; title?: string; startedAt?: string };
              channel.stream = {
                online: payload.streamStatus === 'online',
                ...(payload.title ? { title: payload.title } : {}),
                ...(payload.startedAt ? { startedAt: payload.startedAt } : {}),
              };
            }
            for (const [index, envelope] of normalized.envelopes.entries()) room.push(envelope, `kick:${headers.messageId}:${index}`);
            return reply.status(200).send({ ok: true });
          });
        });
      },

      async start() {
        const [clientSecret, accessToken, refreshToken] = await Promise.all(
          ['KICK_CLIENT_SECRET', 'KICK_ACCESS_TOKEN', 'KICK_REFRESH_TOKEN'].map((name) => ctx.secrets.get(name)),
        );
        for (const secret of [clientSecret, accessToken, refreshToken]) ctx.registerSecret(secret);
        tokens = createKickTokens({
          store: ctx.store,
          clientId: config.KICK_CLIENT_ID,
          clientSecret,
          authUrl: config.KICK_AUTH_URL,
          seed: { accessToken, refreshToken },
          registerSecret: (value) => ctx.registerSecret(value),
          logger: ctx.logger,
        });
        await tokens.seed();
        /** Connects once channels and a token are there; until then the source says what is missing. */
        const configure = async (): Promise<void> => {
          const hasToken = Boolean((await tokens!.get(KickTokenId.bot)) ?? (await tokens!.get(KickTokenId.broadcaster)));
          hint = kickSetupHint(config, hasToken);
          authStatus = hasToken ? 'unknown' : 'missing';
          if (config.KICK_CHANNELS.length === 0 || !hasToken) {
            status = 'not_configured';
            reportHealth();
            await publishStatus();
            return;
          }
          const chat = clientFor(KickTokenId.bot);
          sender = createKickReplySender({
            transport: { send: async (message) => ({ messageId: (await chat.sendChat({ ...message, type: 'user' })).message_id }) },
            beforeSend: async (key) => await ctx.store.claimKey('kick-egress', key, EGRESS_CLAIM_TTL_MS),
          });
          background(connect);
        };
        await configure();
        heartbeat = setInterval(() => {
          if (stopped || busy) return;
          // A failed start (Kick down) is tried again on the heartbeat, and a token the OAuth flow stored
          // after start-up is picked up; otherwise the status is republished.
          if (status === 'error') background(connect);
          else if (status === 'not_configured' && config.KICK_CHANNELS.length > 0) background(configure);
          else void publishStatus();
        }, config.SOURCE_HEARTBEAT_MS);
        heartbeat.unref();
      },

      async stop() {
        stopped = true;
        if (heartbeat) clearInterval(heartbeat);
        sender?.close();
        await connecting;
        await ingress.close();
        await statusChain;
      },
    };
  },
});

export default service;
