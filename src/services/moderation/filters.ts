/**
 * Chat filters, per channel, with Nightbot-like defaults. Pure: the service gathers what a filter needs
 * beyond the message itself (how often the user repeated it, how many messages they sent lately, whether
 * a moderator permitted them a link) and this module only decides.
 *
 * Each filter has an exemption level: that role and every higher one is exempt. By default subscribers,
 * VIPs and moderators are exempt from the link filter, moderators from every other filter; the broadcaster
 * is never filtered.
 */
import { RE2JS } from 're2js';
import { z } from 'zod';
import { Role, roleAtLeast } from '../auth/roles.js';
import { countEmotes, findLinks } from '../query-analyzer/analyze.js';

/** The filters, in the order they are checked (the first violation decides). */
export const FilterName = {
  blockedTerms: 'blocked-terms',
  links: 'links',
  caps: 'caps',
  symbols: 'symbols',
  emotes: 'emotes',
  length: 'length',
  repetition: 'repetition',
  flood: 'flood',
} as const;
export type FilterName = (typeof FilterName)[keyof typeof FilterName];
export const FILTER_NAMES: readonly FilterName[] = Object.values(FilterName);

const ExemptSchema = z.enum([Role.viewer, Role.subscriber, Role.vip, Role.trusted, Role.moderator, Role.broadcaster]);

/** Limits on what a moderator may configure, so a filter stays cheap on every message. */
export const FILTER_LIMITS = { terms: 200, termLength: 200, allowList: 100 } as const;

const BlockedTermSchema = z.object({
  /** A word or phrase, a wildcard (`*` = any characters within a word) or an RE2 regex. */
  pattern: z.string().trim().min(1).max(FILTER_LIMITS.termLength),
  kind: z.enum(['word', 'wildcard', 'regex']).default('word'),
  /** Ban instead of escalating. Default false. */
  ban: z.boolean().default(false),
});
export type BlockedTerm = z.infer<typeof BlockedTermSchema>;

const base = (exempt: z.infer<typeof ExemptSchema>) => ({ enabled: z.boolean().default(true), exempt: ExemptSchema.default(exempt) });

/** One channel's filter settings; every field has a default, so `{}` is the Nightbot-like default. */
export const FilterSettingsSchema = z
  .object({
    /** Master switch: when false nothing is filtered (the log and undo still work). */
    enabled: z.boolean().default(true),
    links: z
      .object({
        ...base(Role.subscriber),
        /**
         * Allowed links: a domain (subdomains included), or a domain and path prefix where `*` is one path
         * segment and `{channel}` the channel's login. Default: Twitch clips and the channel's own links.
         */
        allow: z
          .array(z.string().trim().min(1).max(200))
          .max(FILTER_LIMITS.allowList)
          .default(['clips.twitch.tv', 'twitch.tv/*/clip', 'twitch.tv/{channel}']),
      })
      .strict()
      .prefault({}),
    caps: z
      .object({
        ...base(Role.moderator),
        minLetters: z.number().int().min(1).max(500).default(15),
        ratio: z.number().gt(0).max(1).default(0.7),
      })
      .strict()
      .prefault({}),
    symbols: z
      .object({
        ...base(Role.moderator),
        minChars: z.number().int().min(1).max(500).default(15),
        ratio: z.number().gt(0).max(1).default(0.5),
      })
      .strict()
      .prefault({}),
    emotes: z
      .object({ ...base(Role.moderator), max: z.number().int().min(1).max(500).default(15) })
      .strict()
      .prefault({}),
    length: z
      .object({ ...base(Role.moderator), max: z.number().int().min(20).max(2_000).default(400) })
      .strict()
      .prefault({}),
    /** The same message `count` times within `windowSec`. */
    repetition: z
      .object({
        ...base(Role.moderator),
        count: z.number().int().min(2).max(100).default(3),
        windowSec: z.number().int().min(1).max(3_600).default(60),
      })
      .strict()
      .prefault({}),
    /** More than `messages` messages within `windowSec`. */
    flood: z
      .object({
        ...base(Role.moderator),
        messages: z.number().int().min(2).max(200).default(8),
        windowSec: z.number().int().min(1).max(600).default(10),
      })
      .strict()
      .prefault({}),
    blockedTerms: z
      .object({ ...base(Role.moderator), terms: z.array(BlockedTermSchema).max(FILTER_LIMITS.terms).default([]) })
      .strict()
      .prefault({}),
    escalation: z
      .object({
        /** Offences within this window count towards the next step. Default 600 s. */
        windowSec: z.number().int().min(10).max(86_400).default(600),
        /** Timeouts for the second, third (and later) offence; the first deletes and warns. Default 10 s, 600 s. */
        timeouts: z.array(z.number().int().min(1).max(1_209_600)).min(1).max(5).default([10, 600]),
        /** The chat warning on a first offence; `{user}` and `{reason}` are filled in. */
        warning: z.string().trim().min(1).max(300).default('@{user} please don\u2019t: {reason} (warning)'),
      })
      .strict()
      .prefault({}),
  })
  .strict();
export type FilterSettings = z.infer<typeof FilterSettingsSchema>;
/** Partial settings as a moderator sends them (merged onto the current ones). */
export type FilterSettingsInput = z.input<typeof FilterSettingsSchema>;

/** The default settings. */
export const defaultFilterSettings = (): FilterSettings => FilterSettingsSchema.parse({});

/** Settings with a patch applied one level deep (a filter's fields replace, the others stay). */
export function mergeFilterSettings(current: FilterSettings, patch: Record<string, unknown>): FilterSettings {
  const out: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    const existing = (current as Record<string, unknown>)[key];
    out[key] =
      value && typeof value === 'object' && !Array.isArray(value) && existing && typeof existing === 'object'
        ? { ...existing, ...value }
        : value;
  }
  return FilterSettingsSchema.parse(out);
}

/** Problems with the settings' regexes (RE2 compiles them in linear time or refuses them). */
export function termProblems(settings: FilterSettings): string[] {
  const problems: string[] = [];
  settings.blockedTerms.terms.forEach((term, index) => {
    if (term.kind !== 'regex') return;
    try {
      RE2JS.compile(term.pattern, RE2JS.CASE_INSENSITIVE);
    } catch (error) {
      problems.push(`blockedTerms.terms.${index}: not a valid RE2 regex (${(error as Error).message})`);
    }
  });
  return problems;
}

/** What the service knows about the message beyond its text. */
export interface FilterInput {
  text: string;
  role: string;
  /** The channel's login (for `{channel}` in the link allow-list). */
  channel: string;
  emotes?: unknown;
  /** How many times this user sent this same message within the repetition window, this one included. */
  sameMessageCount?: number;
  /** How many messages this user sent within the flood window, this one included. */
  recentMessageCount?: number;
  /** A moderator's `!permit` is waiting for this user. */
  permitted?: boolean;
}

export interface Violation {
  filter: FilterName;
  /** Short, for chat and the log. */
  reason: string;
  /** What matched (a host, a term, a ratio). */
  detail?: string;
  /** A blocked term configured to ban. */
  ban?: boolean;
  /** The violation is a link the user's permit covers; the service consumes the permit and lets it pass. */
  permitCovers?: boolean;
}

const LEET: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's' };
const foldLeet = (text: string) => text.toLowerCase().replace(/[013457@$]/g, (char) => LEET[char] ?? char);
const isWordChar = (char: string | undefined) => !!char && /[\p{L}\p{N}_]/u.test(char);

/** The RE2 pattern of a term: words and wildcards match whole words, leetspeak folded. */
export function termPattern(term: Pick<BlockedTerm, 'pattern' | 'kind'>): string {
  if (term.kind === 'regex') return term.pattern;
  const folded = foldLeet(term.pattern);
  const body =
    term.kind === 'wildcard'
      ? folded
          .split('*')
          .map((piece) => RE2JS.quote(piece))
          .join('[\\p{L}\\p{N}_]*')
      : RE2JS.quote(folded).replace(/\\ |\s+/g, '\\s+');
  // \b only where the term itself starts or ends with a word character (`*coin` starts anywhere).
  const start = isWordChar(folded[0]) ? '(?:^|[^\\p{L}\\p{N}_])' : '';
  const end = isWordChar(folded.at(-1)) ? '(?:$|[^\\p{L}\\p{N}_])' : '';
  return `${start}${body}${end}`;
}

function matchesAllowEntry(entry: string, channel: string, host: string, path: string): boolean {
  const resolved = entry
    .toLowerCase()
    .replace(/\{channel\}/g, channel)
    .replace(/^https?:\/\//, '')
    .replace(/^\*?\./, '');
  const slash = resolved.indexOf('/');
  const domain = (slash === -1 ? resolved : resolved.slice(0, slash)).replace(/^www\./, '');
  const bare = host.replace(/^www\./, '').replace(/:\d+$/, '');
  if (bare !== domain && !bare.endsWith(`.${domain}`)) return false;
  if (slash === -1) return true;
  const want = resolved
    .slice(slash + 1)
    .split('/')
    .filter(Boolean);
  const have = path.toLowerCase().split(/[/?#]/).filter(Boolean);
  return want.length <= have.length && want.every((segment, index) => segment === '*' || segment === have[index]);
}

/** Whether a link is on the allow-list. */
export function linkAllowed(link: string, host: string, allow: readonly string[], channel: string): boolean {
  const afterHost = link.replace(/^[a-z]+:\/\//i, '').replace(/^[^/?#]*/, '');
  return allow.some((entry) => matchesAllowEntry(entry, channel.replace(/^#/, '').toLowerCase(), host, afterHost));
}

/** The text with the emotes' characters removed (positions as the Twitch normalizer gives them, in code points). */
export function withoutEmotes(text: string, emotes: unknown): string {
  if (!Array.isArray(emotes) || emotes.length === 0) return text;
  const chars = Array.from(text);
  for (const emote of emotes) {
    const positions = (emote as { positions?: unknown } | null)?.positions;
    if (!Array.isArray(positions)) continue;
    for (const position of positions as Array<{ start?: unknown; end?: unknown }>) {
      if (typeof position.start !== 'number' || typeof position.end !== 'number') continue;
      for (let index = Math.max(0, position.start); index <= Math.min(chars.length - 1, position.end); index += 1) chars[index] = ' ';
    }
  }
  return chars.join('');
}

export type FilterCheck = (input: FilterInput) => Violation | undefined;

/** Compiles a channel's settings once (terms into RE2) into a check that returns the first violation. */
export function createFilterCheck(settings: FilterSettings): FilterCheck {
  const terms = settings.blockedTerms.terms.flatMap((term) => {
    try {
      return [{ term, re: RE2JS.compile(termPattern(term), RE2JS.CASE_INSENSITIVE) }];
    } catch {
      return [];
    }
  });
  const applies = (filter: { enabled: boolean; exempt: string }, role: string) => filterApplies(settings, filter, role);

  return (input) => {
    const { text, role } = input;
    if (applies(settings.blockedTerms, role) && terms.length > 0) {
      const folded = foldLeet(text);
      for (const { term, re } of terms) {
        if (re.test(term.kind === 'regex' ? text : folded))
          return { filter: FilterName.blockedTerms, reason: 'that term is not allowed here', detail: term.pattern, ban: term.ban };
      }
    }
    if (applies(settings.links, role)) {
      const blocked = findLinks(text).find(({ host, link }) => !linkAllowed(link, host, settings.links.allow, input.channel));
      if (blocked)
        return {
          filter: FilterName.links,
          reason: 'no links without a moderator\u2019s !permit',
          detail: blocked.host,
          ...(input.permitted ? { permitCovers: true } : {}),
        };
    }
    if (applies(settings.caps, role)) {
      let letters = 0;
      let upper = 0;
      // Emote names (KEKW, LUL) are not shouting.
      for (const char of withoutEmotes(text, input.emotes)) {
        const lower = char.toLowerCase();
        const up = char.toUpperCase();
        if (lower === up) continue;
        letters += 1;
        if (char === up) upper += 1;
      }
      if (letters >= settings.caps.minLetters && upper / letters >= settings.caps.ratio)
        return { filter: FilterName.caps, reason: 'too many capital letters', detail: (upper / letters).toFixed(2) };
    }
    if (applies(settings.symbols, role)) {
      let chars = 0;
      let symbols = 0;
      for (const char of text) {
        if (/\s/u.test(char)) continue;
        chars += 1;
        if (!/[\p{L}\p{N}]/u.test(char)) symbols += 1;
      }
      if (chars >= settings.symbols.minChars && symbols / chars >= settings.symbols.ratio)
        return { filter: FilterName.symbols, reason: 'too many symbols', detail: (symbols / chars).toFixed(2) };
    }
    if (applies(settings.emotes, role)) {
      const count = countEmotes(input.emotes);
      if (count > settings.emotes.max) return { filter: FilterName.emotes, reason: 'too many emotes', detail: String(count) };
    }
    if (applies(settings.length, role) && Array.from(text).length > settings.length.max) {
      return { filter: FilterName.length, reason: 'message too long', detail: String(Array.from(text).length) };
    }
    if (applies(settings.repetition, role) && (input.sameMessageCount ?? 0) >= settings.repetition.count) {
      return { filter: FilterName.repetition, reason: 'the same message again and again', detail: String(input.sameMessageCount) };
    }
    if (applies(settings.flood, role) && (input.recentMessageCount ?? 0) > settings.flood.messages) {
      return { filter: FilterName.flood, reason: 'too many messages too fast', detail: String(input.recentMessageCount) };
    }
    return undefined;
  };
}

/**
 * Whether `filter` checks a chatter of `role`: filtering on, the filter on, the role below its exemption
 * level, and never the broadcaster. The checker and needsHistory both ask here, so they cannot disagree.
 */
function filterApplies(settings: FilterSettings, filter: { enabled: boolean; exempt: string }, role: string): boolean {
  return settings.enabled && filter.enabled && !roleAtLeast(role, filter.exempt) && !roleAtLeast(role, Role.broadcaster);
}

/** Which filters need per-user history for this role (so the service reads counters only when needed). */
export function needsHistory(settings: FilterSettings, role: string): { repetition: boolean; flood: boolean } {
  const on = (filter: { enabled: boolean; exempt: string }) => filterApplies(settings, filter, role);
  return { repetition: on(settings.repetition), flood: on(settings.flood) };
}

/** A message as the repetition filter compares it: case, spacing and trailing punctuation ignored. */
export function messageFingerprint(text: string): string {
  return text
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .replace(/[\s.!?]+$/u, '')
    .trim()
    .slice(0, 200);
}

/** What to do about a violation. */
export type Sanction = { kind: 'delete'; warn: string } | { kind: 'timeout'; seconds: number } | { kind: 'ban' };

/**
 * The escalation: a first offence within the window deletes the message and warns in chat, the next ones
 * time out for the configured durations (10 s, then 10 min), the last duration repeating. A blocked term
 * configured to ban bans at once.
 */
export function sanctionFor(violation: Violation, offence: number, settings: FilterSettings, user: string): Sanction {
  if (violation.ban) return { kind: 'ban' };
  if (offence <= 1)
    return { kind: 'delete', warn: settings.escalation.warning.replace(/\{user\}/g, user).replace(/\{reason\}/g, violation.reason) };
  const timeouts = settings.escalation.timeouts;
  return { kind: 'timeout', seconds: timeouts[Math.min(offence - 2, timeouts.length - 1)]! };
}
