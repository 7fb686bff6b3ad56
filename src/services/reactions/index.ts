import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { Topic, createReply, stepTopic, type Annotation, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { continueWith, defineService, skip, type HandlerResult } from '../../runtime/service.js';
import { createShoutoutSender, type ShoutoutSender } from '../../platforms/twitch/shoutout.js';
import { ensureReactionRules } from './manage.js';
import { channelKey as toolkitChannelKey, readTemplateCounters } from '../moderation/records.js';
import { REACTION_ANNOTATION, REACTIONS_STEP, isReactionName, reactionVariables, renderReaction, type ReactionName } from './reactions.js';

export * from './reactions.js';
export * from './manage.js';

const ConfigSchema = z.object({
  /** Follows within this window after a thanked one are recorded but not thanked again (ms; 0 thanks every follow). */
  REACTIONS_FOLLOW_WINDOW_MS: env.int(10_000, { min: 0 }),
});
type Config = z.infer<typeof ConfigSchema>;

function note(label: string, payload: Record<string, unknown>): Annotation {
  return { id: randomUUID(), kind: 'reaction-result', source: REACTIONS_STEP, createdAt: new Date().toISOString(), label, payload };
}

/**
 * Chat reactions to follows, subs, resubs, gift subs, cheers and raids. The router's `reaction-*` rules
 * route each event here with the reaction's template; the reply goes out through egress like any other.
 * Gifted subs are thanked once per gift (the individual `channel.subscribe` events marked is_gift are
 * folded into it), a burst of follows gets one thank-you per window, and a raid can also get a Twitch
 * shoutout (off by default; Twitch's 2- and 60-minute limits are kept).
 */
export const service = defineService<Config>({
  name: REACTIONS_STEP,
  configSchema: ConfigSchema,
  needsStore: true,
  setup(ctx) {
    let shoutouts: ShoutoutSender | undefined;

    const reply = (envelope: Envelope, name: ReactionName, text: string, extra: Annotation[] = []): HandlerResult =>
      continueWith({
        ...envelope,
        source: { ...envelope.source, egressDestination: envelope.source.egressDestination ?? Topic.egress },
        annotations: [...(envelope.annotations ?? []), ...extra],
        candidates: [...(envelope.candidates ?? []), createReply(REACTIONS_STEP, text, { reaction: name })],
      });
    const quiet = (envelope: Envelope, label: string, payload: Record<string, unknown>): HandlerResult =>
      continueWith({ ...envelope, annotations: [...(envelope.annotations ?? []), note(label, payload)] });

    return {
      consumers: {
        [stepTopic(REACTIONS_STEP)]: {
          mode: 'step',
          async handle(envelope) {
            const annotation = [...(envelope.annotations ?? [])].reverse().find((candidate) => candidate.kind === REACTION_ANNOTATION);
            const name = annotation?.label;
            if (!name || !isReactionName(name)) return skip();
            const settings = (annotation.payload ?? {}) as { template?: unknown; shoutout?: unknown };
            const payload = envelope.payload as Record<string, unknown>;
            const channelId = envelope.source.channelId || envelope.source.channel;

            // A gift bomb is one message: the gift event thanks the gifter; each gifted sub is folded into it.
            if (name === 'subscribe' && payload.isGift === true) return quiet(envelope, 'batched', { into: 'gift' });
            if (name === 'follow' && ctx.config.REACTIONS_FOLLOW_WINDOW_MS > 0) {
              const first = await ctx.store.claimKey('reactions', `follow-window:${channelId}`, ctx.config.REACTIONS_FOLLOW_WINDOW_MS);
              if (!first) return quiet(envelope, 'suppressed', { why: 'another follow was thanked moments ago' });
            }
            const template = typeof settings.template === 'string' ? settings.template : '';
            const counters = /\{count:/i.test(template)
              ? await readTemplateCounters(ctx.store, toolkitChannelKey(envelope.source.platform, envelope.source.channel), template)
              : undefined;
            const text = renderReaction(template, reactionVariables(name, envelope), counters);
            if (!text) return skip();

            const extra: Annotation[] = [];
            if (name === 'raid' && settings.shoutout === true) {
              const raider = payload.fromBroadcaster as { id?: string; login?: string } | null;
              if (raider?.id) {
                const result = await shoutouts!.shoutout(
                  { id: envelope.source.channelId ?? '', login: envelope.source.channel },
                  { id: raider.id, login: raider.login ?? raider.id },
                );
                extra.push(
                  note(
                    result.sent ? 'shoutout-sent' : 'shoutout-skipped',
                    result.sent ? { to: raider.login } : { to: raider.login, reason: result.reason },
                  ),
                );
              }
            }
            return reply(envelope, name, text, extra);
          },
        },
      },
      async start() {
        const [clientId, clientSecret] = await Promise.all([ctx.secrets.get('TWITCH_CLIENT_ID'), ctx.secrets.get('TWITCH_CLIENT_SECRET')]);
        ctx.registerSecret(clientSecret);
        shoutouts = createShoutoutSender({ clientId, clientSecret, store: ctx.store, logger: ctx.logger, tracing: ctx.tracing });
        const added = await ensureReactionRules(ctx.store);
        if (added) ctx.logger.info({ added }, 'added the default reaction rules');
      },
    };
  },
});

export default service;
