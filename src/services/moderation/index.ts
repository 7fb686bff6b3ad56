// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  Topic,
  createAnnotation,
  createEnvelope,
  createReply,
  messageText,
  stepTopic,
  type Annotation,
  type Envelope,
} from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { defineService, handled, continueWith, skip, type HandlerResult } from '../../runtime/service.js';
import type { ActionOutcome, ModerationGateway } from '../../platforms/twitch/moderation.js';
import { Role, roleAtLeast } from '../auth/roles.js';
import { parseCommand } from '../query-analyzer/analyze.js';
import { findStreamSource } from '../stream-source.js';
import {
  createFilterCheck,
  messageFingerprint,
  needsHistory,
  sanctionFor,
  type FilterCheck,
  type FilterSettings,
  type Violation,
} from './filters.js';
import { runModerationRequest } from './perform.js';
import { MODERATION_STEP, RESULT_ANNOTATION, requestOf } from './requests.js';
import {
  appendLog,
  channelKey,
  consumePermit,
  currentGiveaway,
  ensureModerationStep,
  enterGiveaway,
  getFilterSettings,
  grantPermit,
  linesKey,
  listTimers,
  type ModerationLogEntry,
} from './records.js';
import { createTimerRunner, type TimerRunner } from './timers.js';

export * from './filters.js';
export * from './records.js';
export * from './requests.js';
export * from './timers.js';

const ConfigSchema = z.object({
  /** Command prefix (shared with the analyzer and the commands service). */
  COMMAND_PREFIX: env.string().transform((value) => value ?? '!'),
  /** How often timers are checked (ms). Default 30 000. */
  MODERATION_TIMER_TICK_MS: env.int(30_000, { min: 100 }),
});
type Config = z.infer<typeof ConfigSchema>;

/** How long a channel's settings and giveaway are reused before being read again (ms). */
const CACHE_MS = 3_000;
/** How long an envelope's action is remembered, so a redelivery does not act again (ms). */
const ACT_CLAIM_MS = 60 * 60_000;

/** Without Twitch app credentials every action is recorded as not permitted, saying what to set. */
function createUnconfiguredGateway(): ModerationGateway {
  const refuse = async (): Promise<ActionOutcome> => ({
    status: 'not-permitted',
    error: 'twitch is not configured (TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET)',
  });
  return { deleteMessage: refuse, timeout: refuse, ban: refuse, unban: refuse, shoutout: refuse, lookupChannel: async () => undefined };
}

/** Options for tests: a clock for the timers and the escalation, and the Helix gateway. */
export interface ModerationServiceOptions {
  now?: () => number;
  /** Default: Helix through Twurple with the stored broadcaster or bot token. */
  gateway?: ModerationGateway;
}

/**
 * The moderation step: runs after the query analyzer on every chat message. It applies the channel's
 * filters and acts over Helix (delete and warn, escalating timeouts, a ban for a configured term), keeps
 * every action in the moderation log, takes `!permit` and `!so` from moderators, records giveaway
 * entries by keyword and counts chat lines for the timers, which it also runs. A message it acts on is
 * `handled` (no reply from anyone else); any other message continues.
 */
export function createModerationService(options: ModerationServiceOptions = {}) {
  return defineService<Config>({
    name: MODERATION_STEP,
    configSchema: ConfigSchema,
    needsStore: true,
    setup(ctx) {
      const now = options.now ?? Date.now;
      let gateway: ModerationGateway | undefined = options.gateway;
      let timers: TimerRunner | undefined;
      let tick: NodeJS.Timeout | undefined;
      const settingsCache = new Map<string, { at: number; settings: FilterSettings; check: FilterCheck; checkWithoutLinks: FilterCheck }>();
      const timersCache = new Map<string, { at: number; any: boolean }>();

      const settingsFor = async (channel: string) => {
        const cached = settingsCache.get(channel);
        if (cached && now() - cached.at < CACHE_MS) return cached;
        const settings = await getFilterSettings(ctx.store, channel);
        const entry = {
          at: now(),
          settings,
          check: createFilterCheck(settings),
          checkWithoutLinks: createFilterCheck({ ...settings, links: { ...settings.links, enabled: false } }),
        };
        settingsCache.set(channel, entry);
        return entry;
      };

      /** Whether the channel has a timer (chat lines are only counted for channels that do). */
      const hasTimers = async (channel: string) => {
        const cached = timersCache.get(channel);
        if (cached && now() - cached.at < CACHE_MS) return cached.any;
        const any = (await listTimers(ctx.store, channel)).some((timer) => timer.enabled);
        timersCache.set(channel, { at: now(), any });
        return any;
      };

      /** Says on the channel's source record whether the bot may moderate, so the dashboard shows it. */
      const reportRights = async (envelope: Envelope, outcome: ActionOutcome) => {
        if (envelope.source.platform !== 'twitch' || (outcome.status !== 'not-permitted' && outcome.status !== 'done')) return;
        const id = `twitch:${envelope.source.channel.replace(/^#/, '').toLowerCase()}`;
        const moderation =
          outcome.status === 'done'
            ? { permitted: true, at: new Date(now()).toISOString() }
            : { permitted: false, reason: outcome.error ?? 'not permitted', at: new Date(now()).toISOString() };
        await ctx.store.mergeSource({ id, platform: 'twitch', metadata: { moderation } });
        ctx.health.set(`moderation:${id}`, true, moderation.permitted ? undefined : `cannot moderate ${id}: ${moderation.reason}`);
      };

      const note = (fields: { label: string; payload: Record<string, unknown> }): Annotation =>
        createAnnotation(MODERATION_STEP, { kind: RESULT_ANNOTATION, ...fields });

      const act = async (envelope: Envelope, channel: string, violation: Violation): Promise<HandlerResult> => {
        // A redelivered message (a retry after a store outage, R4) must not act twice or count a second offence.
        if (!(await ctx.store.claimKey('moderation-act', envelope.id, ACT_CLAIM_MS))) {
          return handled(
            {
              ...envelope,
              annotations: [...(envelope.annotations ?? []), note({ label: 'already-acted', payload: { filter: violation.filter } })],
            },
            'handled',
          );
        }
        const settings = (await settingsFor(channel)).settings;
        const user = { id: envelope.user.id, login: envelope.user.name.toLowerCase() };
        const display = envelope.user.displayName || envelope.user.name;
        const offence = violation.ban
          ? 1
          : await ctx.store.incrementCounter(`moderation-offences:${channel}:${user.id}`, 1, settings.escalation.windowSec * 1000);
        const sanction = sanctionFor(violation, offence, settings, display);
        const broadcaster = { id: envelope.source.channelId ?? '', login: envelope.source.channel.replace(/^#/, '').toLowerCase() };
        const messageId = envelope.message?.id ?? (typeof envelope.payload.messageId === 'string' ? envelope.payload.messageId : undefined);
        const reason = `${violation.filter}: ${violation.reason}${violation.detail ? ` (${violation.detail})` : ''}`;
        const helix = gateway!;
        const outcome: ActionOutcome =
          sanction.kind === 'delete'
            ? messageId
              ? await helix.deleteMessage(broadcaster, messageId)
              : { status: 'failed', error: 'the message has no id to delete' }
            : sanction.kind === 'timeout'
              ? await helix.timeout(broadcaster, user, sanction.seconds, reason)
              : await helix.ban(broadcaster, user, reason);
        await reportRights(envelope, outcome);
        if (outcome.status === 'done')
          ctx.metrics.platform.moderationActions.inc({
            platform: envelope.source.platform,
            action: sanction.kind,
            reason: violation.filter,
          });
        const entry: ModerationLogEntry = await appendLog(ctx.store, {
          channel,
          at: new Date(now()).toISOString(),
          action: sanction.kind,
          status: outcome.status,
          ...(outcome.error ? { error: outcome.error } : {}),
          user,
          by: 'bot',
          reason: violation.reason,
          filter: violation.filter,
          ...(violation.detail ? { detail: violation.detail } : {}),
          offence,
          ...(messageId ? { messageId } : {}),
          messageText: (messageText(envelope) ?? '').slice(0, 500),
          ...(sanction.kind === 'timeout'
            ? { durationSec: sanction.seconds, undo: 'untimeout' as const }
            : sanction.kind === 'ban'
              ? { undo: 'unban' as const }
              : {}),
          correlationId: envelope.correlationId,
        });
        ctx.logger.info(
          { channel, user: user.login, filter: violation.filter, action: sanction.kind, status: outcome.status, logId: entry.id },
          'moderation action',
        );
        const out: Envelope = {
          ...envelope,
          annotations: [
            ...(envelope.annotations ?? []),
            note({
              label: sanction.kind,
              payload: {
                filter: violation.filter,
                offence,
                status: outcome.status,
                logId: entry.id,
                ...(outcome.error ? { error: outcome.error } : {}),
              },
            }),
          ],
          candidates:
            sanction.kind === 'delete'
              ? [...(envelope.candidates ?? []), createReply(MODERATION_STEP, sanction.warn, { filter: violation.filter })]
              : envelope.candidates,
        };
        return handled(out, 'handled');
      };

      const reply = (envelope: Envelope, text: string, extra: Annotation[] = []): HandlerResult =>
        handled(
          {
            ...envelope,
            annotations: [...(envelope.annotations ?? []), ...extra],
            candidates: [...(envelope.candidates ?? []), createReply(MODERATION_STEP, text)],
          },
          'handled',
        );

      const chatCommand = async (envelope: Envelope, channel: string, name: string, args: string[]): Promise<HandlerResult | undefined> => {
        const role = envelope.user.role;
        const display = envelope.user.displayName || envelope.user.name;
        if (name === 'permit') {
          if (!roleAtLeast(role, Role.moderator)) return undefined;
          const login = args[0]?.replace(/^@/, '').toLowerCase();
          if (!login || !/^\w{1,25}$/.test(login)) return reply(envelope, `@${display} usage: ${ctx.config.COMMAND_PREFIX}permit <user>`);
          await grantPermit(ctx.store, channel, login, envelope.user.name, now());
          return reply(envelope, `@${login} you may post one link in the next 60 seconds.`);
        }
        if (name === 'so' || name === 'shoutout') {
          if (!roleAtLeast(role, Role.moderator)) return undefined;
          const login = args[0]?.replace(/^@/, '').toLowerCase();
          if (!login || !/^\w{1,25}$/.test(login)) return reply(envelope, `@${display} usage: ${ctx.config.COMMAND_PREFIX}so @user`);
          const result = await runModerationRequest(
            { store: ctx.store, gateway: gateway!, now, logger: ctx.logger },
            { action: 'shoutout', target: { login }, reason: `${ctx.config.COMMAND_PREFIX}so from ${envelope.user.name}` },
            { envelope, channel, by: envelope.user.name.toLowerCase() },
          );
          if (result.status === 'done')
            ctx.metrics.platform.moderationActions.inc({ platform: envelope.source.platform, action: 'shoutout', reason: 'requested' });
          return reply(envelope, result.message, [
            note({ label: 'shoutout', payload: { status: result.status, ...(result.error ? { error: result.error } : {}) } }),
          ]);
        }
        return undefined;
      };

      return {
        consumers: {
          [stepTopic(MODERATION_STEP)]: {
            mode: 'step',
            async handle(envelope): Promise<HandlerResult> {
              const request = requestOf(envelope);
              if (request) {
                if ('error' in request)
                  return handled(
                    {
                      ...envelope,
                      annotations: [
                        ...(envelope.annotations ?? []),
                        note({ label: 'refused', payload: { error: `invalid request: ${request.error}` } }),
                      ],
                    },
                    'handled',
                  );
                const channel = channelKey(envelope.source.platform, envelope.source.channel);
                if (!(await ctx.store.claimKey('moderation-act', envelope.id, ACT_CLAIM_MS)))
                  return handled(
                    { ...envelope, annotations: [...(envelope.annotations ?? []), note({ label: 'already-acted', payload: {} })] },
                    'handled',
                  );
                const result = await runModerationRequest({ store: ctx.store, gateway: gateway!, now, logger: ctx.logger }, request, {
                  envelope,
                  channel,
                  by: envelope.user.name.toLowerCase(),
                });
                if (result.outcome) await reportRights(envelope, result.outcome);
                if (result.status === 'done')
                  ctx.metrics.platform.moderationActions.inc({
                    platform: envelope.source.platform,
                    action: request.action,
                    reason: 'requested',
                  });
                const annotations = [
                  ...(envelope.annotations ?? []),
                  note({
                    label: request.action,
                    payload: { status: result.status, message: result.message, ...(result.logId ? { logId: result.logId } : {}) },
                  }),
                ];
                // A shoutout is also a chat message, whoever asked for it.
                if (request.action === 'shoutout' && result.status !== 'refused' && result.error !== 'unknown user') {
                  return handled(
                    {
                      ...envelope,
                      source: { ...envelope.source, egressDestination: envelope.source.egressDestination ?? Topic.egress },
                      annotations,
                      candidates: [...(envelope.candidates ?? []), createReply(MODERATION_STEP, result.message)],
                    },
                    'handled',
                  );
                }
                return handled({ ...envelope, annotations }, 'handled');
              }

              const text = messageText(envelope);
              if (envelope.type !== 'external.chat.message.v1' || text === undefined || text.trim() === '') return skip();
              // Only Twitch is moderated over an API here; other chats (Discord, the dashboard console) pass.
              if (envelope.source.platform !== 'twitch') return skip();
              const channel = channelKey(envelope.source.platform, envelope.source.channel);
              const role = envelope.user.role;
              if (await hasTimers(channel)) await ctx.store.incrementCounter(linesKey(channel), 1);

              const command = parseCommand(text, ctx.config.COMMAND_PREFIX);
              if (command) {
                const answered = await chatCommand(envelope, channel, command.name, command.args);
                if (answered) return answered;
              }
              // A keyword is one word: only one-word messages can enter, and they read the giveaway fresh, so an
              // entry typed right after the start counts.
              const word = text.trim().toLowerCase();
              const giveaway = word.length <= 50 && !/\s/.test(word) ? await currentGiveaway(ctx.store, channel) : undefined;
              if (giveaway?.status === 'open' && word === giveaway.keyword) {
                await enterGiveaway(ctx.store, giveaway, { id: envelope.user.id, login: envelope.user.name.toLowerCase(), role }, now());
              }

              const { settings, check, checkWithoutLinks } = await settingsFor(channel);
              const history = needsHistory(settings, role);
              const [sameMessageCount, recentMessageCount] = await Promise.all([
                history.repetition
                  ? ctx.store.incrementCounter(
                      `moderation-repeat:${channel}:${envelope.user.id}:${createHash('sha1').update(messageFingerprint(text)).digest('hex').slice(0, 16)}`,
                      1,
                      settings.repetition.windowSec * 1000,
                    )
                  : undefined,
                history.flood
                  ? ctx.store.incrementCounter(`moderation-flood:${channel}:${envelope.user.id}`, 1, settings.flood.windowSec * 1000)
                  : undefined,
              ]);
              const input = {
                text,
                role,
                channel: envelope.source.channel,
                emotes: envelope.payload.emotes,
                sameMessageCount,
                recentMessageCount,
              };
              let violation = check(input);
              let permitUsed = false;
              if (violation?.filter === 'links' && (await consumePermit(ctx.store, channel, envelope.user.name, now()))) {
                permitUsed = true;
                violation = checkWithoutLinks(input);
              }
              if (violation) return await act(envelope, channel, violation);
              return continueWith(
                permitUsed
                  ? {
                      ...envelope,
                      annotations: [...(envelope.annotations ?? []), note({ label: 'permit-used', payload: { user: envelope.user.name } })],
                    }
                  : envelope,
              );
            },
          },
        },
        async start() {
          if (await ensureModerationStep(ctx.store)) ctx.logger.info('added the moderation step to the chat-enrichment rule');
          if (!gateway) {
            const [clientId, clientSecret] = await Promise.all([
              ctx.secrets.get('TWITCH_CLIENT_ID'),
              ctx.secrets.get('TWITCH_CLIENT_SECRET'),
            ]);
            ctx.registerSecret(clientSecret);
            // Twurple is loaded only with Twitch configured: an unconfigured platform loads no Twitch SDK.
            gateway =
              clientId && clientSecret
                ? (await import('../../platforms/twitch/moderation.js')).createTwitchModeration({
                    clientId,
                    clientSecret,
                    store: ctx.store,
                    logger: ctx.logger,
                    tracing: ctx.tracing,
                  })
                : createUnconfiguredGateway();
          }
          timers = createTimerRunner({
            store: ctx.store,
            now,
            isLive: async (timerChannel) => {
              const [platform, login] = timerChannel.split(':', 2) as [string, string];
              return (await findStreamSource(ctx.store, { platform, channel: login }))?.streamStatus === 'online';
            },
            send: async (timerChannel, text) => {
              const [platform, login] = timerChannel.split(':', 2) as [string, string];
              const envelope = createEnvelope({
                type: 'system.timer.v1',
                source: { platform, channel: `#${login}`, channelId: '', egressDestination: Topic.egress },
                extra: { candidates: [createReply(MODERATION_STEP, text, { timer: true })] },
              });
              await ctx.publish(Topic.egress, envelope);
            },
            logger: ctx.logger,
          });
          tick = setInterval(
            () => void timers!.tick().catch((error: unknown) => ctx.logger.warn({ error: (error as Error).message }, 'timer tick failed')),
            ctx.config.MODERATION_TIMER_TICK_MS,
          );
          tick.unref();
        },
        async stop() {
          if (tick) clearInterval(tick);
        },
      };
    },
  });
}

export const service = createModerationService();
export default service;
