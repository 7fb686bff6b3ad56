/**
 * Fast deterministic message analysis: intent, sentiment and spam signals. Pure and allocation-light —
 * it runs on every chat message, well under a millisecond each (see bench/analyzer.ts).
 *
 * Spam exemptions (decided here, by permission so stored roles count too):
 * - `spam:exempt` (moderator, broadcaster, trusted, system): never flagged as spam; signals still reported.
 * - `links:post` (vip, trusted, moderator, broadcaster): links are allowed. Subscribers are NOT exempt from
 *   the link rule: a subscription is cheap for a spammer, and the allowlist covers the common safe domains.
 */
import { createAnnotation, type Annotation, type AnnotationFields } from '../../core/index.js';
import { Permission, permissionsFor } from '../auth/roles.js';

export const Intent = { command: 'command', mention: 'mention', question: 'question', greeting: 'greeting', other: 'other' } as const;
export type Intent = (typeof Intent)[keyof typeof Intent];

export const Sentiment = { positive: 'positive', negative: 'negative', neutral: 'neutral' } as const;
export type Sentiment = (typeof Sentiment)[keyof typeof Sentiment];

export const SpamReason = {
  blocklist: 'blocklist',
  link: 'link',
  caps: 'caps',
  repeatedChars: 'repeated-chars',
  repeatedWords: 'repeated-words',
  emoteFlood: 'emote-flood',
  length: 'length',
} as const;
export type SpamReason = (typeof SpamReason)[keyof typeof SpamReason];

/** Tunables; every field has a documented default. */
export interface SpamThresholds {
  /** Caps rule applies from this many letters on. Default 15. */
  capsMinLetters: number;
  /** Upper-case share of letters that is spam on its own. Default 0.75. */
  capsRatio: number;
  /** Run of one character that is spam on its own (half weight from `repeatedCharsWarn`). Default 15 / 8. */
  repeatedChars: number;
  repeatedCharsWarn: number;
  /** One token repeated at least this many times, making up at least `repeatedWordsShare` of the message. Default 5 / 0.6. */
  repeatedWords: number;
  repeatedWordsShare: number;
  /** Emotes in one message that are spam on its own. Default 10. */
  emoteFlood: number;
  /** Messages longer than this add a small weight. Default 400. */
  maxLength: number;
}

export const DEFAULT_SPAM_THRESHOLDS: SpamThresholds = {
  capsMinLetters: 15,
  capsRatio: 0.75,
  repeatedChars: 15,
  repeatedCharsWarn: 8,
  repeatedWords: 5,
  repeatedWordsShare: 0.6,
  emoteFlood: 10,
  maxLength: 400,
};

export interface AnalyzerOptions {
  /** The bot's login; mentions of it (`@name` or the bare name) are intent `mention`. Default `bitbrat`. */
  botName?: string;
  /** Command prefix. Default `!`. */
  commandPrefix?: string;
  /** Domains links may point to (subdomains included), e.g. `twitch.tv`. Default none. */
  linkAllowlist?: readonly string[];
  /** Words or phrases that make a message spam (matched case-insensitively, common leetspeak folded). */
  blocklist?: readonly string[];
  thresholds?: Partial<SpamThresholds>;
}

export interface AnalyzerInput {
  text: string;
  role?: string;
  /** Every role the user holds (auth sets this). */
  roles?: readonly string[];
  /** When absent, derived from the role. */
  permissions?: readonly string[];
  /** Emote positions from the platform, in any of the shapes `countEmotes` accepts. */
  emotes?: unknown;
}

export interface SpamSignal {
  reason: SpamReason;
  weight: number;
  detail?: string;
}

export interface Analysis {
  intent: Intent;
  intentScore: number;
  /** Every intent signal seen, not only the winner. */
  signals: { command: boolean; mention: boolean; question: boolean; greeting: boolean };
  command?: { name: string; args: string[] };
  sentiment: Sentiment;
  /** -1 (negative) … 1 (positive). */
  sentimentScore: number;
  sentimentWords: { positive: string[]; negative: string[] };
  spam: boolean;
  /** 0 … 1; 1 or more total weight is spam. */
  spamScore: number;
  spamSignals: SpamSignal[];
  /** Why spam rules did not apply (e.g. `spam:exempt`). */
  exempt?: string;
  /** The deterministic rules were unsure; an optional classifier may refine the intent. */
  ambiguous: boolean;
  /** Set when an optional classifier changed the result. */
  classifiedBy?: string;
}

const POSITIVE = new Set(
  'love loved loving lovely like liked likes great awesome amazing nice good cool thanks thank thx ty gg ggs wp pog poggers pogchamp hype hyped wow fun funny best beautiful happy excellent wonderful enjoy enjoyed enjoying fantastic brilliant perfect sweet glad congrats congratulations incredible epic clutch yay lol lmao haha hahaha welcome kind helpful impressive legend goat based'.split(
    ' ',
  ),
);
const NEGATIVE = new Set(
  'hate hated hates bad awful terrible worst sucks suck sucked boring trash garbage stupid dumb ugly annoying sad angry wtf ugh cringe lame horrible disgusting pathetic useless broken lag laggy laggs toxic rip fail failed failing worse disappointing disappointed mad hated idiot noob scam rigged'.split(
    ' ',
  ),
);
const NEGATORS = new Set([
  'not',
  "don't",
  'dont',
  "isn't",
  'isnt',
  "wasn't",
  'wasnt',
  'never',
  'no',
  "didn't",
  'didnt',
  "doesn't",
  'doesnt',
  "aren't",
  'arent',
  "can't",
  'cant',
  "won't",
  'wont',
]);
const POSITIVE_EMOTICONS = [':)', ':-)', ':d', '<3', ';)', ':p', 'xd'];
const NEGATIVE_EMOTICONS = [':(', ':-(', ":'(", 'd:', '>:('];

const QUESTION_START = new Set([
  'what',
  'why',
  'how',
  'when',
  'where',
  'who',
  'whom',
  'whose',
  'which',
  "what's",
  'whats',
  "how's",
  'hows',
  "who's",
  'whos',
  "where's",
  'wheres',
  "when's",
  "why's",
]);
/** `is it live`, `are you ok`: a form of "be" followed by a subject. */
const BE_START = new Set(['is', 'are', 'was', 'were', 'isnt', "isn't", 'arent', "aren't"]);
const BE_SUBJECTS = new Set([
  'you',
  'u',
  'we',
  'i',
  'it',
  'he',
  'she',
  'they',
  'this',
  'that',
  'there',
  'anyone',
  'anybody',
  'someone',
  'somebody',
  'the',
  'your',
  'ur',
  'chat',
  'stream',
]);
/** `can you`, `do we`: a modal or "do" followed by a person (not `do it now`, an order). */
const MODAL_START = new Set([
  'can',
  'could',
  'do',
  'does',
  'did',
  'will',
  'would',
  'should',
  'have',
  'has',
  'may',
  'shall',
  'cant',
  "can't",
  'dont',
  "don't",
  'wont',
  "won't",
]);
const PERSONS = new Set(['you', 'u', 'we', 'i', 'he', 'she', 'they', 'anyone', 'anybody', 'someone', 'somebody', 'ya', 'yall', "y'all"]);
const GREETINGS = new Set([
  'hi',
  'hello',
  'hey',
  'heya',
  'hiya',
  'howdy',
  'yo',
  'sup',
  'wassup',
  'hai',
  'hallo',
  'hola',
  'greetings',
  'gm',
  'o/',
  'morning',
  'evening',
  'afternoon',
  'ello',
  'heyo',
  'hii',
  'hiii',
  'heyy',
  'heyyy',
]);

/** Top-level domains recognised for bare links like `example.com` (scheme or `www.` links need none). */
const LINK_TLDS =
  'com net org io gg tv me co ly xyz info biz ru cn uk de fr nl eu us ca au app dev link site online shop store live stream top club fun click to be it es pl br in jp kr su cc ws pw tk ml ga cf gq icu vip win bid loan work page ai sh gl gd';
const LINK_RE = new RegExp(
  String.raw`(?:\bhttps?:\/\/([^\s/?#]+)[^\s]*)|(?:\bwww\.((?:[a-z0-9-]+\.)+[a-z]{2,24})\b[^\s]*)|(?:\b((?:[a-z0-9-]+\.)+(?:${LINK_TLDS.split(' ').join('|')}))\b(?:\/[^\s]*)?)`,
  'gi',
);

/** Every link in `text`: its host (lower-case) and the whole link as written (shared with the moderation filters). */
export function findLinks(text: string): Array<{ host: string; link: string }> {
  const out: Array<{ host: string; link: string }> = [];
  if (!text.includes('.')) return out;
  const re = new RegExp(LINK_RE.source, LINK_RE.flags);
  let found: RegExpExecArray | null;
  while ((found = re.exec(text)) !== null) {
    const host = (found[1] ?? found[2] ?? found[3] ?? '').toLowerCase();
    if (host) out.push({ host, link: found[0] });
  }
  return out;
}

const LEET: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's', '!': 'i' };
const foldLeet = (text: string) => text.toLowerCase().replace(/[013457@$!]/g, (char) => LEET[char] ?? char);

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Counts emote occurrences from platform data: the IRC tag `25:0-4,12-16/1902:6-10`, an array of
 * `{ start, end }` / `{ positions: [...] }` / `'25:0-4'` items, or a map `{ id: ['0-4', '6-10'] }`.
 */
export function countEmotes(emotes: unknown): number {
  if (!emotes) return 0;
  const ranges = (value: unknown): number => {
    if (typeof value === 'string') {
      const positions = value.includes(':') ? value.slice(value.indexOf(':') + 1) : value;
      return positions.split(',').filter((range) => /^\d+-\d+$/.test(range.trim())).length;
    }
    if (Array.isArray(value)) return value.length;
    if (value instanceof Map) return [...value.values()].reduce((sum: number, item) => sum + ranges(item), 0);
    return 0;
  };
  if (typeof emotes === 'string') return emotes.split('/').reduce((sum, part) => sum + ranges(part), 0);
  if (emotes instanceof Map) return ranges(emotes);
  if (Array.isArray(emotes)) {
    let count = 0;
    for (const item of emotes) {
      if (typeof item === 'string') count += ranges(item);
      else if (item && typeof item === 'object') {
        const record = item as Record<string, unknown>;
        if (Array.isArray(record.positions)) count += record.positions.length;
        else if (typeof record.count === 'number') count += record.count;
        else count += 1;
      }
    }
    return count;
  }
  if (typeof emotes === 'object')
    return Object.values(emotes as Record<string, unknown>).reduce((sum: number, value) => sum + ranges(value), 0);
  return 0;
}

/** Splits a leading command: `!so @friend now` → `{ name: 'so', args: ['@friend', 'now'] }`. */
export function parseCommand(text: string, prefix = '!'): { name: string; args: string[] } | undefined {
  const trimmed = text.trim();
  if (!prefix || !trimmed.startsWith(prefix)) return undefined;
  const rest = trimmed.slice(prefix.length);
  if (!/^[\p{L}\p{N}]/u.test(rest)) return undefined;
  const [name, ...args] = rest.split(/\s+/);
  // `!uptime?` is still `!uptime`.
  return { name: name!.toLowerCase().replace(/[^\p{L}\p{N}_-]+$/u, ''), args };
}

function longestRun(text: string): number {
  let best = 0;
  let run = 0;
  let previous = '';
  for (const char of text) {
    if (char === previous && char !== ' ') run += 1;
    else run = 1;
    previous = char;
    if (run > best) best = run;
  }
  return best;
}

export type Analyzer = (input: AnalyzerInput) => Analysis;

/** Builds an analyzer with its options compiled once. */
export function createAnalyzer(options: AnalyzerOptions = {}): Analyzer {
  const botName = (options.botName ?? 'bitbrat').toLowerCase();
  const prefix = options.commandPrefix ?? '!';
  const thresholds = { ...DEFAULT_SPAM_THRESHOLDS, ...options.thresholds };
  const allowlist = (options.linkAllowlist ?? [])
    .map((domain) =>
      domain
        .trim()
        .toLowerCase()
        .replace(/^\*?\./, ''),
    )
    .filter(Boolean);
  const blockWords = new Set<string>();
  const blockPhrases: string[] = [];
  for (const entry of options.blocklist ?? []) {
    const folded = foldLeet(entry.trim());
    if (!folded) continue;
    if (/\s/.test(folded)) blockPhrases.push(folded.replace(/\s+/g, ' '));
    else blockWords.add(folded);
  }
  const mentionRe = botName ? new RegExp(`(^|[^\\w])@?${escapeRegExp(botName)}(?![\\w])`, 'i') : undefined;

  const allowedHost = (host: string) => {
    const h = host.toLowerCase().replace(/:\d+$/, '');
    return allowlist.some((domain) => h === domain || h.endsWith(`.${domain}`));
  };

  return (input) => {
    const text = input.text ?? '';
    const lower = text.toLowerCase();
    const tokens = lower.split(/\s+/).filter(Boolean);
    const words = tokens.map((token) => token.replace(/^[^\p{L}\p{N}@']+|[^\p{L}\p{N}']+$/gu, '')).filter(Boolean);

    // ---------------------------------------------------------------- intent
    const command = parseCommand(text, prefix);
    const mention = !!mentionRe?.test(text);
    const first = words[0] ?? '';
    const second = words[1] ?? '';
    const question =
      text.includes('?') ||
      QUESTION_START.has(first) ||
      (BE_START.has(first) && BE_SUBJECTS.has(second)) ||
      (MODAL_START.has(first) && PERSONS.has(second));
    const greeting = GREETINGS.has(first) || GREETINGS.has(tokens[0] ?? '') || /^good (morning|afternoon|evening|night)\b/.test(lower);
    let intent: Intent = Intent.other;
    let intentScore = 0.5;
    if (command) [intent, intentScore] = [Intent.command, 1];
    else if (mention) [intent, intentScore] = [Intent.mention, /@/.test(text) ? 0.95 : 0.8];
    else if (question) [intent, intentScore] = [Intent.question, text.includes('?') ? 0.9 : 0.7];
    else if (greeting) [intent, intentScore] = [Intent.greeting, 0.8];

    // ------------------------------------------------------------- sentiment
    const positiveWords: string[] = [];
    const negativeWords: string[] = [];
    for (let i = 0; i < words.length; i += 1) {
      const word = words[i]!;
      const isPositive = POSITIVE.has(word);
      const isNegative = NEGATIVE.has(word);
      if (!isPositive && !isNegative) continue;
      const negated = (i > 0 && NEGATORS.has(words[i - 1]!)) || (i > 1 && NEGATORS.has(words[i - 2]!));
      if (isPositive !== negated) positiveWords.push(word);
      else negativeWords.push(word);
    }
    let positive = positiveWords.length;
    let negative = negativeWords.length;
    for (const emoticon of POSITIVE_EMOTICONS) if (lower.includes(emoticon)) positive += 1;
    for (const emoticon of NEGATIVE_EMOTICONS) if (lower.includes(emoticon)) negative += 1;
    const hits = positive + negative;
    const sentimentScore = hits === 0 ? 0 : Math.max(-1, Math.min(1, (positive - negative) / Math.sqrt(hits + 1)));
    const sentiment: Sentiment =
      sentimentScore >= 0.25 ? Sentiment.positive : sentimentScore <= -0.25 ? Sentiment.negative : Sentiment.neutral;

    // ------------------------------------------------------------------ spam
    const signals: SpamSignal[] = [];
    const permissions = input.permissions ?? permissionsFor(input.roles ?? (input.role ? [input.role] : []));
    if (blockWords.size > 0 || blockPhrases.length > 0) {
      const folded = foldLeet(lower);
      const foldedWords = folded.split(/[^\p{L}\p{N}]+/u);
      const hit =
        foldedWords.find((word) => blockWords.has(word)) ?? blockPhrases.find((phrase) => folded.replace(/\s+/g, ' ').includes(phrase));
      if (hit) signals.push({ reason: SpamReason.blocklist, weight: 1, detail: hit });
    }
    if (!permissions.includes(Permission.linksPost) && (lower.includes('.') || lower.includes('://'))) {
      LINK_RE.lastIndex = 0;
      let found: RegExpExecArray | null;
      while ((found = LINK_RE.exec(text)) !== null) {
        const host = (found[1] ?? found[2] ?? found[3] ?? '').toLowerCase();
        if (host && !allowedHost(host) && !allowedHost(host.replace(/^www\./, ''))) {
          signals.push({ reason: SpamReason.link, weight: 1, detail: host });
          break;
        }
      }
    }
    let letters = 0;
    let upper = 0;
    for (const char of text) {
      const lowerChar = char.toLowerCase();
      const upperChar = char.toUpperCase();
      if (lowerChar === upperChar) continue;
      letters += 1;
      if (char === upperChar) upper += 1;
    }
    if (letters >= thresholds.capsMinLetters) {
      const ratio = upper / letters;
      if (ratio >= thresholds.capsRatio) signals.push({ reason: SpamReason.caps, weight: 1, detail: ratio.toFixed(2) });
      else if (ratio >= thresholds.capsRatio - 0.15) signals.push({ reason: SpamReason.caps, weight: 0.5, detail: ratio.toFixed(2) });
    }
    const run = longestRun(text);
    if (run >= thresholds.repeatedChars) signals.push({ reason: SpamReason.repeatedChars, weight: 1, detail: String(run) });
    else if (run >= thresholds.repeatedCharsWarn) signals.push({ reason: SpamReason.repeatedChars, weight: 0.5, detail: String(run) });
    if (tokens.length >= thresholds.repeatedWords) {
      const counts = new Map<string, number>();
      let top = 0;
      for (const token of tokens) {
        const count = (counts.get(token) ?? 0) + 1;
        counts.set(token, count);
        if (count > top) top = count;
      }
      if (top >= thresholds.repeatedWords && top / tokens.length >= thresholds.repeatedWordsShare) {
        signals.push({ reason: SpamReason.repeatedWords, weight: 1, detail: `${top}/${tokens.length}` });
      }
    }
    const emoteCount = countEmotes(input.emotes);
    if (emoteCount >= thresholds.emoteFlood) signals.push({ reason: SpamReason.emoteFlood, weight: 1, detail: String(emoteCount) });
    else if (emoteCount >= Math.ceil(thresholds.emoteFlood / 2) && emoteCount >= tokens.length * 0.8) {
      signals.push({ reason: SpamReason.emoteFlood, weight: 0.6, detail: String(emoteCount) });
    }
    if (text.length > thresholds.maxLength) signals.push({ reason: SpamReason.length, weight: 0.3, detail: String(text.length) });

    const total = signals.reduce((sum, signal) => sum + signal.weight, 0);
    const exempt = permissions.includes(Permission.spamExempt) ? Permission.spamExempt : undefined;
    const spam = !exempt && total >= 1;
    const ambiguous = !command && !spam && ((intent === Intent.other && words.length >= 4) || (positive > 0 && negative > 0));

    return {
      intent,
      intentScore,
      signals: { command: !!command, mention, question, greeting },
      ...(command ? { command } : {}),
      sentiment,
      sentimentScore: Math.round(sentimentScore * 1000) / 1000,
      sentimentWords: { positive: positiveWords, negative: negativeWords },
      spam,
      spamScore: Math.min(1, Math.round(total * 1000) / 1000),
      spamSignals: signals,
      ...(exempt ? { exempt } : {}),
      ambiguous,
    };
  };
}

/** The annotations an analysis adds to an envelope (plus `moderation` when it is spam). */
export function analysisAnnotations(analysis: Analysis, source = 'query-analyzer', at = new Date().toISOString()): Annotation[] {
  const annotate = (fields: AnnotationFields) => createAnnotation(source, fields, at);
  const annotations: Annotation[] = [
    annotate({
      kind: 'intent',
      label: analysis.intent,
      value: analysis.intent,
      score: analysis.intentScore,
      payload: {
        signals: analysis.signals,
        ambiguous: analysis.ambiguous,
        ...(analysis.classifiedBy ? { classifiedBy: analysis.classifiedBy } : {}),
        ...(analysis.command ? { command: analysis.command.name, args: analysis.command.args } : {}),
      },
    }),
    annotate({
      kind: 'sentiment',
      label: analysis.sentiment,
      value: analysis.sentimentScore,
      score: analysis.sentimentScore,
      payload: { words: analysis.sentimentWords },
    }),
    annotate({
      kind: 'spam',
      label: analysis.spam ? 'spam' : 'clean',
      value: analysis.spam,
      score: analysis.spamScore,
      payload: { reasons: analysis.spamSignals, ...(analysis.exempt ? { exempt: analysis.exempt } : {}) },
    }),
  ];
  if (analysis.spam) {
    annotations.push(
      annotate({
        kind: 'moderation',
        label: 'spam',
        value: 'flag',
        score: analysis.spamScore,
        payload: { action: 'flag', reasons: [...new Set(analysis.spamSignals.map((signal) => signal.reason))] },
      }),
    );
  }
  return annotations;
}
