/**
 * The chat reactions to platform events (pure; no I/O): what each one answers to, its default wording,
 * the variables its template may use, the router rule that sends the event to the reactions service, and
 * the rendering of a reply.
 *
 * A reaction *is* its rule (`reaction-<name>` in the `rules` table): switching it off disables the rule,
 * rewording it changes the template the rule annotates the envelope with. So reactions travel the slip,
 * are recorded by the finalizer and go out through egress and its rate limits like any reply.
 */
import { z } from 'zod';
import { BitBratError, type Envelope } from '../../core/index.js';
import type { RuleRecord } from '../../store/index.js';

/** The step id (and service name) reactions are routed to. */
export const REACTIONS_STEP = 'reactions';
/** Priority of the reaction rules: above `platform-events-recorded` (900), below system events (1000). */
export const REACTION_RULE_PRIORITY = 950;
/** The annotation kind a reaction rule writes (label: the reaction's name; payload: its settings). */
export const REACTION_ANNOTATION = 'reaction';

export interface ReactionDefinition {
  /** The EventSub type it answers to. */
  kind: string;
  description: string;
  template: string;
  variables: readonly string[];
}

/** Every reaction BitBrat ships, with its default wording. */
export const REACTIONS = {
  follow: {
    kind: 'channel.follow',
    description: 'A new follower',
    template: 'Thanks for the follow, {user}! Welcome in.',
    variables: ['user', 'channel'],
  },
  subscribe: {
    kind: 'channel.subscribe',
    description: 'A new subscription (gifted ones are thanked with the gift)',
    template: 'Thank you for subscribing, {user}!',
    variables: ['user', 'tier', 'channel'],
  },
  resubscribe: {
    kind: 'channel.subscription.message',
    description: 'A resubscription shared in chat, with its message',
    template: '{user} resubscribed for {months} months! {message}',
    variables: ['user', 'tier', 'months', 'streak', 'message', 'channel'],
  },
  gift: {
    kind: 'channel.subscription.gift',
    description: 'Gifted subscriptions: one message per gift, however many subs',
    template: 'Thank you {user} for gifting {total} {subs}!',
    variables: ['user', 'total', 'subs', 'tier', 'cumulative', 'channel'],
  },
  cheer: {
    kind: 'channel.cheer',
    description: 'Bits cheered',
    template: 'Thanks for the {bits} bits, {user}!',
    variables: ['user', 'bits', 'message', 'channel'],
  },
  raid: {
    kind: 'channel.raid',
    description: 'An incoming raid (optionally with a Twitch shoutout)',
    template: '{raider} is raiding with {viewers} viewers! Welcome, raiders!',
    variables: ['raider', 'viewers', 'channel'],
  },
} as const satisfies Record<string, ReactionDefinition>;
export type ReactionName = keyof typeof REACTIONS;

export const REACTION_NAMES = Object.keys(REACTIONS) as ReactionName[];

/** A reaction as the API shows it. */
export interface Reaction {
  name: ReactionName;
  kind: string;
  description: string;
  enabled: boolean;
  template: string;
  defaultTemplate: string;
  variables: readonly string[];
  /** Raids only: also send a Twitch shoutout to the raider (off by default). */
  shoutout?: boolean;
}

/** What the annotation carries to the reactions service. */
export interface ReactionSettings {
  template: string;
  shoutout?: boolean;
}

export const ruleId = (name: ReactionName) => `reaction-${name}`;

export function isReactionName(name: string): name is ReactionName {
  return Object.hasOwn(REACTIONS, name);
}

/** The event types reactions answer: Twitch EventSub, and Kick's events (normalized to the same kinds). */
export const REACTION_EVENT_TYPES = ['twitch.eventsub.v1', 'kick.event.v1'] as const;

/** The router rule of a reaction with these settings. */
export function reactionRule(
  name: ReactionName,
  settings: { enabled: boolean; template: string; shoutout?: boolean },
): Omit<RuleRecord, 'updatedAt'> {
  const definition = REACTIONS[name];
  const payload: Record<string, unknown> = {
    template: settings.template,
    ...(name === 'raid' ? { shoutout: settings.shoutout ?? false } : {}),
  };
  return {
    id: ruleId(name),
    priority: REACTION_RULE_PRIORITY,
    enabled: settings.enabled,
    description: `Chat reaction: ${definition.description.toLowerCase()}. Change it with PUT /api/reactions/${name} or \`bitbrat reactions set ${name}\`.`,
    logic: {
      and: [
        { '==': [{ var: 'stage' }, 'ingress'] },
        { in: [{ var: 'type' }, [...REACTION_EVENT_TYPES]] },
        { '==': [{ var: 'kind' }, definition.kind] },
      ],
    },
    action: { slip: [REACTIONS_STEP], annotate: { kind: REACTION_ANNOTATION, label: name, payload } },
  };
}

/** The default rule of every reaction (the seed). */
export function defaultReactionRules(): Array<Omit<RuleRecord, 'updatedAt'>> {
  return REACTION_NAMES.map((name) =>
    reactionRule(name, { enabled: true, template: REACTIONS[name].template, ...(name === 'raid' ? { shoutout: false } : {}) }),
  );
}

/** The reaction a stored rule describes (defaults when the rule is missing). */
export function reactionFromRule(name: ReactionName, rule: Pick<RuleRecord, 'enabled' | 'action'> | undefined): Reaction {
  const definition = REACTIONS[name];
  const annotate = rule?.action.annotate as { payload?: Record<string, unknown> } | undefined;
  const template = typeof annotate?.payload?.template === 'string' ? annotate.payload.template : definition.template;
  return {
    name,
    kind: definition.kind,
    description: definition.description,
    enabled: rule?.enabled ?? true,
    template,
    defaultTemplate: definition.template,
    variables: definition.variables,
    ...(name === 'raid' ? { shoutout: annotate?.payload?.shoutout === true } : {}),
  };
}

/** What a client may change. */
export const ReactionUpdateSchema = z.strictObject({
  enabled: z.boolean().optional(),
  /** `null` restores the default wording. */
  template: z.string().trim().min(1).max(400).nullable().optional(),
  shoutout: z.boolean().optional(),
});
export type ReactionUpdate = z.infer<typeof ReactionUpdateSchema>;

/** The variables a template names, e.g. `{user}` → `user`. */
export function templateVariables(template: string): string[] {
  return [...template.matchAll(/\{([a-zA-Z_]+)\}/g)].map((match) => match[1]!);
}

/** Applies an update to a reaction, refusing unknown variables and a shoutout on anything but raids. */
export function applyReactionUpdate(current: Reaction, update: ReactionUpdate): Reaction {
  if (update.shoutout !== undefined && current.name !== 'raid')
    throw new BitBratError('BAD_REQUEST', `invalid reaction: only the raid reaction has a shoutout setting`);
  const template = update.template === null ? current.defaultTemplate : (update.template ?? current.template);
  const unknown = templateVariables(template).filter((variable) => !current.variables.includes(variable));
  if (unknown.length) {
    throw new BitBratError(
      'BAD_REQUEST',
      `invalid template: unknown variable${unknown.length > 1 ? 's' : ''} ${unknown.map((name) => `{${name}}`).join(', ')}; ${current.name} can use ${current.variables.map((name) => `{${name}}`).join(', ')}`,
    );
  }
  return {
    ...current,
    template,
    ...(update.enabled !== undefined ? { enabled: update.enabled } : {}),
    ...(update.shoutout !== undefined ? { shoutout: update.shoutout } : {}),
  };
}

const text = (value: unknown): string => (typeof value === 'string' ? value : typeof value === 'number' ? String(value) : '');
const displayName = (ref: unknown): string => {
  const user = ref as { name?: unknown; login?: unknown } | null | undefined;
  return text(user?.name) || text(user?.login);
};

/** The values of a reaction's variables for an EventSub envelope. */
export function reactionVariables(name: ReactionName, envelope: Envelope): Record<string, string> {
  const payload = envelope.payload as Record<string, unknown>;
  const user = text(envelope.user.displayName) || text(envelope.user.name) || displayName(payload.user);
  const tier = payload.tierLevel ? `Tier ${text(payload.tierLevel)}` : '';
  const base = { channel: envelope.source.channel, user };
  switch (name) {
    case 'follow':
      return base;
    case 'subscribe':
      return { ...base, tier };
    case 'resubscribe':
      return {
        ...base,
        tier,
        months: text(payload.cumulativeMonths) || '1',
        streak: text(payload.streakMonths),
        message: text(payload.message),
      };
    case 'gift': {
      const total = Number(payload.total) || 1;
      return {
        ...base,
        user: payload.isAnonymous ? 'an anonymous gifter' : user,
        total: String(total),
        subs: total === 1 ? 'sub' : 'subs',
        tier,
        cumulative: text(payload.cumulativeTotal),
      };
    }
    case 'cheer':
      return { ...base, user: payload.isAnonymous ? 'anonymous cheerer' : user, bits: text(payload.bits), message: text(payload.message) };
    case 'raid':
      return { channel: base.channel, raider: displayName(payload.fromBroadcaster) || user, viewers: text(payload.viewers) || '0' };
  }
}

/** Renders a template; a variable without a value becomes empty, and runs of spaces collapse. */
export function renderReaction(template: string, variables: Record<string, string>, counters: Record<string, number> = {}): string {
  return (
    template
      .replace(/\{([a-zA-Z_]+)\}/g, (whole, key: string) => (Object.hasOwn(variables, key) ? variables[key]! : whole))
      // Channel counters (`{count:deaths}`), as in commands and timers; an unknown counter's placeholder stays.
      .replace(/\{count:([a-z0-9_]{1,32})\}/gi, (whole, name: string) =>
        Object.hasOwn(counters, name.toLowerCase()) ? String(counters[name.toLowerCase()]) : whole,
      )
      .replace(/\s{2,}/g, ' ')
      .trim()
  );
}
