/**
 * Where moderation and the streamer toolkit keep their data: typed access over the store's documents and
 * counters, so the service, the commands, the API and the CLI read and write the same shapes on every
 * driver. Every record is per channel, keyed `<platform>:<channel login>`.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { BitBratError } from '../../core/index.js';
import type { Store } from '../../store/index.js';
import { FilterSettingsSchema, defaultFilterSettings, mergeFilterSettings, termProblems, type FilterSettings } from './filters.js';

/** Document collections (and counter key prefixes) used here. */
export const Collection = {
  settings: 'moderation-settings',
  log: 'moderation-log',
  permits: 'moderation-permits',
  counters: 'toolkit-counters',
  quotes: 'toolkit-quotes',
  timers: 'toolkit-timers',
  giveaways: 'toolkit-giveaways',
  entries: 'toolkit-giveaway-entries',
} as const;

/** `twitch:streamer` from a platform and a channel (`#Streamer` or `streamer`). */
export function channelKey(platform: string, channel: string): string {
  return `${platform}:${channel.replace(/^#/, '').toLowerCase()}`;
}

/** A channel key from API or CLI input: `twitch:streamer`, `#streamer` or `streamer` (Twitch assumed). */
export function parseChannelKey(input: string): string {
  const trimmed = input.trim();
  const [platform, channel] = trimmed.includes(':') ? (trimmed.split(':', 2) as [string, string]) : ['twitch', trimmed];
  const login = channel.replace(/^#/, '').toLowerCase();
  if (!/^[a-z0-9_]{1,40}$/.test(platform) || !/^[\p{L}\p{N}_.-]{1,64}$/u.test(login))
    throw new BitBratError('BAD_REQUEST', `"${input}" is not a channel; use a login like streamer or twitch:streamer`);
  return `${platform}:${login}`;
}

const badRequest = (what: string, error: z.ZodError) =>
  new BitBratError(
    'BAD_REQUEST',
    `${what}: ${error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ')}`,
  );

// -------------------------------------------------------------------------------------- filter settings

/** A channel's filter settings (the defaults until a moderator changes them). */
export async function getFilterSettings(store: Store, channel: string): Promise<FilterSettings> {
  const doc = await store.getDoc(Collection.settings, channel);
  if (!doc) return defaultFilterSettings();
  const parsed = FilterSettingsSchema.safeParse(doc.data);
  return parsed.success ? parsed.data : defaultFilterSettings();
}

/** Applies a partial change (one level deep) and stores the result; bad input is a BAD_REQUEST listing every problem. */
export async function updateFilterSettings(store: Store, channel: string, patch: unknown): Promise<FilterSettings> {
  if (!patch || typeof patch !== 'object' || Array.isArray(patch))
    throw new BitBratError('BAD_REQUEST', 'filter settings: send a JSON object, e.g. {"links": {"allow": ["youtube.com"]}}');
  let next: FilterSettings;
  try {
    next = mergeFilterSettings(await getFilterSettings(store, channel), patch as Record<string, unknown>);
  } catch (error) {
    if (error instanceof z.ZodError) throw badRequest('filter settings', error);
    throw error;
  }
  const problems = termProblems(next);
  if (problems.length > 0) throw new BitBratError('BAD_REQUEST', `filter settings: ${problems.join('; ')}`);
  await store.putDoc(Collection.settings, channel, next as unknown as Record<string, unknown>);
  return next;
}

/** Back to the defaults. */
export async function resetFilterSettings(store: Store, channel: string): Promise<FilterSettings> {
  await store.deleteDoc(Collection.settings, channel);
  return defaultFilterSettings();
}

// ------------------------------------------------------------------------------------- moderation log

export const ModerationAction = {
  delete: 'delete',
  timeout: 'timeout',
  ban: 'ban',
  unban: 'unban',
  untimeout: 'untimeout',
  shoutout: 'shoutout',
} as const;
export type ModerationAction = (typeof ModerationAction)[keyof typeof ModerationAction];

/** How an action ended: done on Twitch, refused for lack of rights, failed, or not attempted. */
export type ActionStatus = 'done' | 'not-permitted' | 'failed' | 'rate-limited';

/** One line of the moderation log: who, what, why, which filter, and how to undo it. */
export interface ModerationLogEntry {
  id: string;
  channel: string;
  at: string;
  action: ModerationAction;
  status: ActionStatus;
  /** Why it failed or was not permitted. */
  error?: string;
  /** The viewer acted on. */
  user: { id: string; login: string };
  /** `bot` for a filter; otherwise the moderator's login (through chat, the API or an LLM tool). */
  by: string;
  reason: string;
  filter?: string;
  detail?: string;
  /** The offence number within the escalation window. */
  offence?: number;
  messageId?: string;
  messageText?: string;
  durationSec?: number;
  /** The action that undoes this one (unban for a ban, untimeout for a timeout), when any. */
  undo?: 'unban' | 'untimeout';
  undone?: { at: string; by: string; status: ActionStatus; error?: string };
  correlationId?: string;
}

/** Log ids sort by time, so a listing newest first is a descending id range. */
export function newLogId(at: string): string {
  return `${at}~${randomUUID().slice(0, 8)}`;
}

export async function appendLog(store: Store, entry: Omit<ModerationLogEntry, 'id'> & { id?: string }): Promise<ModerationLogEntry> {
  const full = { ...entry, id: entry.id ?? newLogId(entry.at) } as ModerationLogEntry;
  await store.putDoc(Collection.log, full.id, full as unknown as Record<string, unknown>);
  return full;
}

export async function getLogEntry(store: Store, id: string): Promise<ModerationLogEntry | undefined> {
  return (await store.getDoc<Record<string, unknown>>(Collection.log, id))?.data as ModerationLogEntry | undefined;
}

/** The log entry `id`, checked before an undo is asked for: NOT_FOUND when there is none, BAD_REQUEST when its action has no undo. */
export async function getUndoableLogEntry(store: Store, id: string): Promise<ModerationLogEntry> {
  const entry = await getLogEntry(store, id);
  if (!entry) throw new BitBratError('NOT_FOUND', `no moderation action ${id}`);
  if (!entry.undo) throw new BitBratError('BAD_REQUEST', `a ${entry.action} cannot be undone (only timeouts and bans can)`);
  return entry;
}

/** Newest first; `channel` and `user` (login) narrow it. */
export async function listLog(
  store: Store,
  query: { channel?: string; user?: string; limit?: number } = {},
): Promise<ModerationLogEntry[]> {
  const limit = Math.max(1, Math.min(500, query.limit ?? 50));
  const narrowed = query.channel !== undefined || query.user !== undefined;
  const docs = await store.listDocs(Collection.log, { descending: true, limit: narrowed ? 1_000 : limit });
  return docs
    .map((doc) => doc.data as unknown as ModerationLogEntry)
    .filter(
      (entry) =>
        (query.channel === undefined || entry.channel === query.channel) &&
        (query.user === undefined || entry.user.login === query.user.replace(/^@/, '').toLowerCase()),
    )
    .slice(0, limit);
}

export async function markUndone(
  store: Store,
  entry: ModerationLogEntry,
  undone: NonNullable<ModerationLogEntry['undone']>,
): Promise<ModerationLogEntry> {
  const next = { ...entry, undone };
  await store.putDoc(Collection.log, entry.id, next as unknown as Record<string, unknown>);
  return next;
}

// --------------------------------------------------------------------------------------------- permits

/** How long a `!permit` lasts. */
export const PERMIT_MS = 60_000;

export async function grantPermit(store: Store, channel: string, login: string, by: string, now = Date.now()): Promise<void> {
  await store.putDoc(Collection.permits, `${channel}:${login.toLowerCase()}`, { until: now + PERMIT_MS, by });
}

/** Whether a permit is waiting for the user (not consumed). */
export async function hasPermit(store: Store, channel: string, login: string, now = Date.now()): Promise<boolean> {
  const doc = await store.getDoc<{ until: number }>(Collection.permits, `${channel}:${login.toLowerCase()}`);
  return !!doc && Number(doc.data.until) > now;
}

/** Uses the permit up: true for exactly one caller, and only while it is valid. */
export async function consumePermit(store: Store, channel: string, login: string, now = Date.now()): Promise<boolean> {
  const id = `${channel}:${login.toLowerCase()}`;
  const doc = await store.getDoc<{ until: number }>(Collection.permits, id);
  if (!doc) return false;
  const deleted = await store.deleteDoc(Collection.permits, id);
  return deleted && Number(doc.data.until) > now;
}

// -------------------------------------------------------------------------------------------- counters

const NAME = /^[a-z0-9_]{1,32}$/;
export const CounterSchema = z
  .object({
    /** The chat command and the `{count:name}` variable. */
    name: z.string().trim().toLowerCase().regex(NAME, 'a counter name is 1-32 letters, digits or _'),
    /** What `!name` answers; `{count}` is the value. */
    response: z.string().trim().min(1).max(300).default('{name}: {count}'),
  })
  .strict();
export type Counter = z.infer<typeof CounterSchema> & { value: number };

const counterKey = (channel: string, name: string) => `toolkit-counter:${channel}:${name}`;

export async function counterValue(store: Store, channel: string, name: string): Promise<number> {
  return await store.incrementCounter(counterKey(channel, name), 0);
}

export async function addToCounter(store: Store, channel: string, name: string, by: number): Promise<number> {
  return await store.incrementCounter(counterKey(channel, name), by);
}

/** Sets the value (the difference is added, so concurrent `+1`s are not lost). */
export async function setCounter(store: Store, channel: string, name: string, value: number): Promise<number> {
  const current = await counterValue(store, channel, name);
  return await addToCounter(store, channel, name, value - current);
}

export async function getCounter(store: Store, channel: string, name: string): Promise<Counter | undefined> {
  const doc = await store.getDoc<z.infer<typeof CounterSchema>>(Collection.counters, `${channel}:${name.toLowerCase()}`);
  return doc ? { ...doc.data, value: await counterValue(store, channel, doc.data.name) } : undefined;
}

export async function listCounters(store: Store, channel: string): Promise<Counter[]> {
  const docs = await store.listDocs<z.infer<typeof CounterSchema>>(Collection.counters, { prefix: `${channel}:`, limit: 1_000 });
  return await Promise.all(docs.map(async (doc) => ({ ...doc.data, value: await counterValue(store, channel, doc.data.name) })));
}

/** Creates or rewords a counter; `value` (optional) sets it. */
export async function saveCounter(store: Store, channel: string, input: unknown): Promise<Counter> {
  const parsed = CounterSchema.extend({ value: z.number().int().min(-1e9).max(1e9).optional() }).safeParse(input);
  if (!parsed.success) throw badRequest('counter', parsed.error);
  const { value, ...counter } = parsed.data;
  await store.putDoc(Collection.counters, `${channel}:${counter.name}`, counter);
  return {
    ...counter,
    value: value === undefined ? await counterValue(store, channel, counter.name) : await setCounter(store, channel, counter.name, value),
  };
}

export async function deleteCounter(store: Store, channel: string, name: string): Promise<boolean> {
  return await store.deleteDoc(Collection.counters, `${channel}:${name.toLowerCase()}`);
}

/** The counter names a template reads through `{count:name}`. */
export function templateCounters(template: string): string[] {
  return [...new Set([...template.matchAll(/\{count:([a-z0-9_]{1,32})\}/gi)].map((match) => match[1]!.toLowerCase()))];
}

/** The values of the counters a template reads (a name no counter has stays out, so its placeholder shows). */
export async function readTemplateCounters(store: Store, channel: string, template: string): Promise<Record<string, number>> {
  const counters = await Promise.all(templateCounters(template).map((name) => getCounter(store, channel, name)));
  return Object.fromEntries(counters.flatMap((counter) => (counter ? [[counter.name, counter.value]] : [])));
}

// ---------------------------------------------------------------------------------------------- quotes

export interface Quote {
  number: number;
  text: string;
  game?: string;
  addedBy: string;
  addedAt: string;
}

const quoteId = (channel: string, number: number) => `${channel}:${String(number).padStart(8, '0')}`;

export const QuoteInputSchema = z
  .object({
    text: z.string().trim().min(1).max(400),
    game: z.string().trim().max(100).optional(),
    addedBy: z.string().trim().max(64).optional(),
  })
  .strict();

export async function addQuote(
  store: Store,
  channel: string,
  input: { text: string; game?: string; addedBy: string },
  at = new Date().toISOString(),
): Promise<Quote> {
  const number = await store.incrementCounter(`toolkit-quote-seq:${channel}`, 1);
  const quote: Quote = { number, text: input.text, ...(input.game ? { game: input.game } : {}), addedBy: input.addedBy, addedAt: at };
  await store.putDoc(Collection.quotes, quoteId(channel, number), quote as unknown as Record<string, unknown>);
  return quote;
}

export async function getQuote(store: Store, channel: string, number: number): Promise<Quote | undefined> {
  return (await store.getDoc(Collection.quotes, quoteId(channel, number)))?.data as Quote | undefined;
}

export async function listQuotes(store: Store, channel: string): Promise<Quote[]> {
  return (await store.listDocs(Collection.quotes, { prefix: `${channel}:`, limit: 1_000 })).map((doc) => doc.data as unknown as Quote);
}

export async function deleteQuote(store: Store, channel: string, number: number): Promise<boolean> {
  return await store.deleteDoc(Collection.quotes, quoteId(channel, number));
}

/** `#12 "text" [game, 2026-12-06]` */
export function formatQuote(quote: Quote): string {
  const details = [quote.game, quote.addedAt.slice(0, 10)].filter(Boolean).join(', ');
  return `#${quote.number}: "${quote.text}" [${details}]`;
}

// ---------------------------------------------------------------------------------------------- timers

export const TimerSchema = z
  .object({
    name: z.string().trim().toLowerCase().regex(NAME, 'a timer name is 1-32 letters, digits or _'),
    /** The chat message; `{count:name}` and `{channel}` are filled in. */
    message: z.string().trim().min(1).max(450),
    /** Minutes between messages. Default 15. */
    intervalMin: z.number().int().min(1).max(1_440).default(15),
    /** Chat lines since the last message before it may run again. Default 5. */
    minLines: z.number().int().min(0).max(10_000).default(5),
    enabled: z.boolean().default(true),
  })
  .strict();
export type TimerSettings = z.infer<typeof TimerSchema>;
export interface Timer extends TimerSettings {
  channel: string;
  lastRunAt?: number;
  linesAtLastRun?: number;
}

export const linesKey = (channel: string) => `toolkit-lines:${channel}`;

export async function listTimers(store: Store, channel?: string): Promise<Timer[]> {
  return (await store.listDocs(Collection.timers, { ...(channel ? { prefix: `${channel}:` } : {}), limit: 1_000 })).map(
    (doc) => doc.data as unknown as Timer,
  );
}

/** Creates or changes a timer (a change keeps when it last ran). */
export async function saveTimer(store: Store, channel: string, input: unknown): Promise<Timer> {
  const parsed = TimerSchema.safeParse(input);
  if (!parsed.success) throw badRequest('timer', parsed.error);
  const id = `${channel}:${parsed.data.name}`;
  const existing = (await store.getDoc(Collection.timers, id))?.data as Timer | undefined;
  const timer: Timer = {
    ...parsed.data,
    channel,
    ...(existing?.lastRunAt !== undefined ? { lastRunAt: existing.lastRunAt, linesAtLastRun: existing.linesAtLastRun } : {}),
  };
  await store.putDoc(Collection.timers, id, timer as unknown as Record<string, unknown>);
  return timer;
}

export async function recordTimerRun(store: Store, timer: Timer, at: number, lines: number): Promise<void> {
  await store.putDoc(Collection.timers, `${timer.channel}:${timer.name}`, {
    ...timer,
    lastRunAt: at,
    linesAtLastRun: lines,
  } as unknown as Record<string, unknown>);
}

export async function deleteTimer(store: Store, channel: string, name: string): Promise<boolean> {
  return await store.deleteDoc(Collection.timers, `${channel}:${name.toLowerCase()}`);
}

/** A toolkit record kept by name in a channel: what it is called, and how to list, save and delete it. */
export interface NamedRecordKind {
  readonly noun: string;
  list(store: Store, channel: string): Promise<unknown[]>;
  save(store: Store, channel: string, input: unknown): Promise<unknown>;
  remove(store: Store, channel: string, name: string): Promise<boolean>;
}

/** Timers and counters: listed, saved and deleted by name alike (the API and the CLI serve both the same way). */
export const NAMED_RECORDS = {
  timers: { noun: 'timer', list: listTimers, save: saveTimer, remove: deleteTimer },
  counters: { noun: 'counter', list: listCounters, save: saveCounter, remove: deleteCounter },
} as const satisfies Record<string, NamedRecordKind>;
export type NamedRecords = keyof typeof NAMED_RECORDS;

/**
 * Whether a timer is due: on, the stream live, its interval passed since it last ran (or since `since`,
 * when the runner started, for a timer that never ran), and enough chat since then.
 */
export function timerDue(timer: Timer, state: { now: number; live: boolean; lines: number; since: number }): boolean {
  if (!timer.enabled || !state.live) return false;
  const last = timer.lastRunAt ?? state.since;
  if (state.now - last < timer.intervalMin * 60_000) return false;
  return state.lines - (timer.linesAtLastRun ?? 0) >= timer.minLines;
}

// ------------------------------------------------------------------------------------------- giveaways

export interface Giveaway {
  id: string;
  channel: string;
  keyword: string;
  openedAt: string;
  closesAt: string;
  /** Subscribers' entries count this many times. Default 1 (no luck). */
  subscriberLuck: number;
  status: 'open' | 'drawn' | 'cancelled';
  openedBy: string;
  winners: Array<{ userId: string; login: string; at: string }>;
}

export interface GiveawayEntry {
  userId: string;
  login: string;
  role: string;
  weight: number;
  at: string;
}

export const GiveawayInputSchema = z
  .object({
    keyword: z.string().trim().min(1).max(50).regex(/^\S+$/, 'the keyword is one word, e.g. !join'),
    durationSec: z.number().int().min(10).max(86_400).default(300),
    subscriberLuck: z.number().int().min(1).max(10).default(1),
  })
  .strict();

/** The channel's latest giveaway (open or finished). */
export async function currentGiveaway(store: Store, channel: string): Promise<Giveaway | undefined> {
  const [doc] = await store.listDocs(Collection.giveaways, { prefix: `${channel}:`, descending: true, limit: 1 });
  return doc?.data as unknown as Giveaway | undefined;
}

export async function listGiveaways(store: Store, channel: string): Promise<Giveaway[]> {
  return (await store.listDocs(Collection.giveaways, { prefix: `${channel}:`, descending: true, limit: 100 })).map(
    (doc) => doc.data as unknown as Giveaway,
  );
}

export async function startGiveaway(store: Store, channel: string, input: unknown, openedBy: string, now = Date.now()): Promise<Giveaway> {
  const parsed = GiveawayInputSchema.safeParse(input);
  if (!parsed.success) throw badRequest('giveaway', parsed.error);
  const open = await currentGiveaway(store, channel);
  if (open?.status === 'open' && Date.parse(open.closesAt) > now)
    throw new BitBratError('BAD_REQUEST', `a giveaway (${open.keyword}) is already open; draw or cancel it first`);
  const openedAt = new Date(now).toISOString();
  const giveaway: Giveaway = {
    id: `${channel}:${openedAt}`,
    channel,
    keyword: parsed.data.keyword.toLowerCase(),
    openedAt,
    closesAt: new Date(now + parsed.data.durationSec * 1000).toISOString(),
    subscriberLuck: parsed.data.subscriberLuck,
    status: 'open',
    openedBy,
    winners: [],
  };
  await store.putDoc(Collection.giveaways, giveaway.id, giveaway as unknown as Record<string, unknown>);
  return giveaway;
}

/** Records an entry once per user while the giveaway is open; true when newly entered. */
export async function enterGiveaway(
  store: Store,
  giveaway: Giveaway,
  user: { id: string; login: string; role: string },
  now = Date.now(),
): Promise<boolean> {
  if (giveaway.status !== 'open' || Date.parse(giveaway.closesAt) <= now) return false;
  const weight = user.role === 'subscriber' || user.role === 'vip' || user.role === 'trusted' ? giveaway.subscriberLuck : 1;
  const entry: GiveawayEntry = { userId: user.id, login: user.login, role: user.role, weight, at: new Date(now).toISOString() };
  return (
    (await store.createDoc(Collection.entries, `${giveaway.id}|${user.id}`, entry as unknown as Record<string, unknown>)) !== undefined
  );
}

export async function listEntries(store: Store, giveaway: Giveaway): Promise<GiveawayEntry[]> {
  return (await store.listDocs(Collection.entries, { prefix: `${giveaway.id}|`, limit: 1_000 })).map(
    (doc) => doc.data as unknown as GiveawayEntry,
  );
}

/** A weighted pick (subscriber luck); `random` in [0, 1). Undefined when nobody entered. */
export function pickWinner(entries: readonly GiveawayEntry[], exclude: ReadonlySet<string>, random: number): GiveawayEntry | undefined {
  const pool = entries.filter((entry) => !exclude.has(entry.userId));
  const total = pool.reduce((sum, entry) => sum + entry.weight, 0);
  let target = random * total;
  for (const entry of pool) {
    target -= entry.weight;
    if (target < 0) return entry;
  }
  return pool.at(-1);
}

/** Draws a winner (again, for a redraw: earlier winners are left out) and closes entry. */
export async function drawGiveaway(
  store: Store,
  channel: string,
  random = Math.random(),
  now = Date.now(),
): Promise<{ giveaway: Giveaway; winner?: GiveawayEntry; entries: number }> {
  const giveaway = await currentGiveaway(store, channel);
  if (!giveaway || giveaway.status === 'cancelled') throw new BitBratError('NOT_FOUND', 'no giveaway to draw; start one first');
  const entries = await listEntries(store, giveaway);
  const winner = pickWinner(entries, new Set(giveaway.winners.map((w) => w.userId)), random);
  const next: Giveaway = {
    ...giveaway,
    status: 'drawn',
    closesAt: giveaway.status === 'open' ? new Date(Math.min(now, Date.parse(giveaway.closesAt))).toISOString() : giveaway.closesAt,
    winners: winner
      ? [...giveaway.winners, { userId: winner.userId, login: winner.login, at: new Date(now).toISOString() }]
      : giveaway.winners,
  };
  await store.putDoc(Collection.giveaways, giveaway.id, next as unknown as Record<string, unknown>);
  return { giveaway: next, ...(winner ? { winner } : {}), entries: entries.length };
}

export async function cancelGiveaway(store: Store, channel: string): Promise<Giveaway> {
  const giveaway = await currentGiveaway(store, channel);
  if (giveaway?.status !== 'open') throw new BitBratError('NOT_FOUND', 'no open giveaway to cancel');
  const next: Giveaway = { ...giveaway, status: 'cancelled' };
  await store.putDoc(Collection.giveaways, giveaway.id, next as unknown as Record<string, unknown>);
  return next;
}

// ------------------------------------------------------------------------------------------ routing

/**
 * Puts the moderation step into the stored `chat-enrichment` rule of an installation made before it
 * existed, when that rule still has the old default slip (query-analyzer, router). A rule someone
 * changed is left alone; an empty table is the router's to seed from the defaults file (which has it).
 */
export async function ensureModerationStep(store: Pick<Store, 'getRule' | 'upsertRule'>): Promise<boolean> {
  const rule = await store.getRule('chat-enrichment');
  const slip = (rule?.action as { slip?: unknown } | undefined)?.slip;
  if (!rule || !Array.isArray(slip) || JSON.stringify(slip) !== JSON.stringify(['query-analyzer', 'router'])) return false;
  const { updatedAt: _updatedAt, ...rest } = rule;
  await store.upsertRule({ ...rest, action: { ...rule.action, slip: ['query-analyzer', 'moderation', 'router'] } });
  return true;
}
