import { z } from 'zod';
import { Topic, instanceEgressTopic, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { createServiceIngress } from '../../runtime/ingress-buffer.js';
import { chatEgressStage, defineService, type HandlerContext, type ServiceContext } from '../../runtime/service.js';
import {
  buildDiscordStatusEnvelope,
  createDiscordConnector,
  DEFAULT_ANNOUNCE_TEMPLATE,
  DEFAULT_RETRY_INITIAL_MS,
  deliverDiscordReply,
  MESSAGE_CONTENT_FIX,
  normalizeDiscordMessage,
  type DiscordConnector,
  type DiscordSnapshot,
} from '../../platforms/discord/index.js';
import type { RuleRecord } from '../../store/index.js';
import { announceStreamEvent, GO_LIVE_RULE } from './announce.js';

/** A Discord id (a snowflake: a 64-bit number in decimal). */
const SNOWFLAKE = /^\d{15,21}$/;

const ConfigSchema = z.object({
  /** REST base for discord.js (its `api` option); the gateway URL is read from `{url}/v10/gateway/bot`. */
  DISCORD_API_URL: env.url().transform((value) => value ?? 'https://discord.com/api'),
  /** Channel ids to listen in; empty: every text channel the bot can read. */
  DISCORD_CHANNELS: env
    .csv()
    .refine(
      (ids) => ids.every((id) => SNOWFLAKE.test(id)),
      'must be channel ids (numbers; Developer Mode → right-click the channel → Copy Channel ID), not names',
    ),
  /** Channel id for go-live announcements; unset: none. */
  DISCORD_ANNOUNCE_CHANNEL: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z.string().regex(SNOWFLAKE, 'must be a channel id (a number), not a name').optional(),
  ),
  /** `{channel}`, `{title}`, `{game}`, `{link}` are filled in. */
  DISCORD_ANNOUNCE_TEMPLATE: env.string(DEFAULT_ANNOUNCE_TEMPLATE),
  /** Role ids or names whose members are moderators (besides everyone with Manage Messages). */
  DISCORD_MOD_ROLES: env.csv(),
  SOURCE_HEARTBEAT_MS: env.int(30_000, { min: 50 }),
  /** First delay before connecting again after a failed login (doubles up to 5 min). */
  DISCORD_RECONNECT_MS: env.int(DEFAULT_RETRY_INITIAL_MS, { min: 10 }),
});
type Config = z.infer<typeof ConfigSchema>;

const NOT_CONFIGURED =
  'discord is not configured: set the DISCORD_BOT_TOKEN secret (a bot token from the Discord Developer Portal) and restart';

/**
 * Discord in and out: guild messages become `external.chat.message.v1` envelopes (platform `discord`)
 * on ingress, replies come back on this instance's egress topic as Discord replies, the connection's
 * state is published as `system.source.status` per guild, and the `discord` slip step posts and edits
 * go-live announcements for stream events routed to it.
 */
export const service = defineService({
  name: 'discord',
  configSchema: ConfigSchema,
  needsStore: true,

  setup(ctx: ServiceContext<Config>) {
    const config = ctx.config;
    let connector: DiscordConnector | undefined;
    let heartbeat: NodeJS.Timeout | undefined;
    // Messages wait here, in order, while the bus refuses them; a loss is counted (INGRESS_BUFFER_MAX).
    const ingress = createServiceIngress(ctx, 'discord');
    let status = Promise.resolve();
    let ruleEnsured = false;

    const reportHealth = (snapshot: DiscordSnapshot | undefined) => {
      if (!snapshot) return ctx.health.set('discord', true, NOT_CONFIGURED, { configured: false });
      const why =
        snapshot.status === 'connected'
          ? snapshot.messageContentMissing
            ? `: ${MESSAGE_CONTENT_FIX}`
            : ''
          : snapshot.lastError
            ? `: ${snapshot.lastError.message}`
            : '';
      // A connected bot without message content still answers mentions: ready, with the fix in the detail.
      ctx.health.set('discord', snapshot.status === 'connected', `discord ${snapshot.status}${why}`, { configured: true });
    };

    const publishStatus = () => {
      const snapshot = connector?.snapshot();
      const hint = !snapshot
        ? NOT_CONFIGURED
        : snapshot.status === 'error'
          ? snapshot.lastError?.message
          : snapshot.messageContentMissing
            ? MESSAGE_CONTENT_FIX
            : undefined;
      const common = {
        status: snapshot?.status ?? ('not_configured' as const),
        guilds: snapshot?.guilds.length ?? 0,
        metrics: { ...(snapshot?.counters ?? { messagesIn: 0, messagesOut: 0, errors: 0, reconnects: 0 }), lost: ingress.lost },
        latencyMs: snapshot?.latencyMs ?? null,
        lastError: snapshot?.lastError ?? null,
        authStatus: snapshot ? snapshot.authStatus : ('missing' as const),
        ...(hint ? { howToConnect: hint } : {}),
      };
      const guilds = snapshot?.guilds ?? [];
      const envelopes = guilds.length
        ? guilds.map((guild) =>
            buildDiscordStatusEnvelope({ ...common, guildId: guild.id, guildName: guild.name, channels: guild.channels }),
          )
        : [buildDiscordStatusEnvelope(common)];
      status = status.then(async () => {
        for (const envelope of envelopes) {
          await ctx
            .publish(Topic.ingress, envelope)
            .catch((error: unknown) =>
              ctx.logger.warn({ err: error, sourceId: envelope.payload.sourceId }, 'could not publish discord status'),
            );
        }
      });
      return status;
    };

    /** Adds the go-live rule once the router has seeded the rules table (an empty table is the router's to seed). */
    const ensureGoLiveRule = async () => {
      if (ruleEnsured || !config.DISCORD_ANNOUNCE_CHANNEL) return;
      const rules = await ctx.store.listRules();
      if (rules.length === 0) return;
      if (!rules.some((rule) => rule.id === GO_LIVE_RULE.id)) {
        await ctx.store.upsertRule(structuredClone(GO_LIVE_RULE) as unknown as Omit<RuleRecord, 'updatedAt'>);
        ctx.logger.info({ rule: GO_LIVE_RULE.id }, 'added the discord go-live routing rule');
      }
      ruleEnsured = true;
    };

    const egress = chatEgressStage('discord', (envelope, handler) => deliverDiscordReply(envelope, connector, { signal: handler.signal }));

    return {
      consumers: {
        'internal.egress.{instanceId}.v1': egress,
        'internal.discord.v1': {
          mode: 'step',
          handle: (envelope: Envelope, handler: HandlerContext) =>
            announceStreamEvent(envelope, {
              store: ctx.store,
              connector,
              channelId: config.DISCORD_ANNOUNCE_CHANNEL,
              template: config.DISCORD_ANNOUNCE_TEMPLATE ?? DEFAULT_ANNOUNCE_TEMPLATE,
              signal: handler.signal,
            }),
        },
      },

      routes(app) {
        app.get('/_debug/discord', async () => ({
          ...(connector?.snapshot() ?? { status: 'not_configured', hint: NOT_CONFIGURED }),
          channels: config.DISCORD_CHANNELS,
          announceChannel: config.DISCORD_ANNOUNCE_CHANNEL ?? null,
          modRoles: config.DISCORD_MOD_ROLES,
          ingest: ingress.snapshot(),
        }));
      },

      async start() {
        const token = await ctx.secrets.get('DISCORD_BOT_TOKEN');
        ctx.registerSecret(token);
        const tick = () => {
          void ensureGoLiveRule().catch((error: unknown) =>
            ctx.logger.warn({ err: error }, 'could not add the discord go-live rule; retrying'),
          );
          void publishStatus();
        };
        heartbeat = setInterval(tick, config.SOURCE_HEARTBEAT_MS);
        heartbeat.unref();
        if (!token) {
          reportHealth(undefined);
          tick();
          return;
        }
        connector = createDiscordConnector({
          token,
          apiUrl: config.DISCORD_API_URL,
          channels: config.DISCORD_CHANNELS,
          retryInitialMs: config.DISCORD_RECONNECT_MS,
          logger: ctx.logger.child({ component: 'discord' }),
          tracing: ctx.tracing,
          onMessage(message) {
            const envelope = normalizeDiscordMessage(message, {
              modRoles: config.DISCORD_MOD_ROLES,
              egressDestination: instanceEgressTopic(ctx.instanceId),
            });
            ingress.push(envelope, `discord:${message.id}`);
          },
          onStateChange(snapshot) {
            reportHealth(snapshot);
            void publishStatus();
          },
        });
        ctx.health.set('discord', false, 'discord connecting', { configured: true });
        tick();
        // In the background: a slow or refused login must not hold up the process; it is reported as status.
        void connector.start();
      },

      async stop() {
        if (heartbeat) clearInterval(heartbeat);
        await connector?.stop();
        await ingress.close();
        await status;
      },
    };
  },
});

export default service;
