/**
 * The streamer toolkit in chat: counters (`!deaths`, `!deaths+` / `!deaths-` / `!deaths= 5` for
 * moderators), quotes (`!quote add …`, `!quote 12`, `!quote`, `!quote del 12`) and giveaways
 * (`!giveaway start !join 5m [luck=2]`, `!giveaway draw`, `!giveaway cancel`, `!giveaway`). Entries by
 * keyword are recorded by the moderation step, which sees every chat message. Data lives in the store
 * (see moderation/records.ts), shared with the API and the CLI.
 */
import type { Store } from '../../store/index.js';
import { Role, roleAtLeast } from '../auth/roles.js';
import {
  addQuote,
  addToCounter,
  cancelGiveaway,
  counterValue,
  currentGiveaway,
  deleteQuote,
  drawGiveaway,
  formatQuote,
  getCounter,
  getQuote,
  listQuotes,
  setCounter,
  startGiveaway,
} from '../moderation/records.js';

export interface ToolkitContext {
  store: Store;
  channel: string;
  /** The first word as typed (`!deaths+`), to tell `+`/`-`/`=` apart from the command name. */
  head: string;
  name: string;
  args: string[];
  user: { id: string; login: string; display: string; role: string };
  prefix: string;
  /** The game being streamed, for new quotes. */
  game?: string;
  random?: () => number;
  now?: () => number;
}

/** A chat answer, `null` for "handled, say nothing", or undefined when this is not a toolkit command. */
export type ToolkitAnswer = string | null | undefined;

/** Parses `5m`, `90s`, `2h` or plain seconds; undefined when it is not a duration. */
export function parseDuration(text: string | undefined): number | undefined {
  const match = /^(\d{1,5})(s|m|h)?$/i.exec(text ?? '');
  if (!match) return undefined;
  const value = Number(match[1]);
  return value * ({ s: 1, m: 60, h: 3_600 }[(match[2] ?? 's').toLowerCase() as 's' | 'm' | 'h'] ?? 1);
}

export async function toolkitCommand(ctx: ToolkitContext): Promise<ToolkitAnswer> {
  const moderator = roleAtLeast(ctx.user.role, Role.moderator);
  const at = `@${ctx.user.display}`;

  if (ctx.name === 'quote' || ctx.name === 'quotes') {
    const [sub, ...rest] = ctx.args;
    if (sub?.toLowerCase() === 'add') {
      if (!moderator && !roleAtLeast(ctx.user.role, Role.vip)) return `${at} only VIPs and moderators can add quotes.`;
      const text = rest
        .join(' ')
        .trim()
        .replace(/^"(.*)"$/s, '$1');
      if (!text) return `${at} usage: ${ctx.prefix}quote add <text>`;
      if (text.length > 400) return `${at} a quote is at most 400 characters.`;
      const quote = await addQuote(
        ctx.store,
        ctx.channel,
        { text, ...(ctx.game ? { game: ctx.game } : {}), addedBy: ctx.user.login },
        new Date(ctx.now?.() ?? Date.now()).toISOString(),
      );
      return `Added quote #${quote.number}.`;
    }
    if (sub?.toLowerCase() === 'del' || sub?.toLowerCase() === 'delete') {
      if (!moderator) return `${at} only moderators can delete quotes.`;
      const number = Number(rest[0]?.replace(/^#/, ''));
      if (!Number.isInteger(number) || number < 1) return `${at} usage: ${ctx.prefix}quote del <number>`;
      return (await deleteQuote(ctx.store, ctx.channel, number)) ? `Deleted quote #${number}.` : `${at} there is no quote #${number}.`;
    }
    if (sub !== undefined) {
      const number = Number(sub.replace(/^#/, ''));
      if (!Number.isInteger(number) || number < 1)
        return `${at} usage: ${ctx.prefix}quote, ${ctx.prefix}quote <number> or ${ctx.prefix}quote add <text>`;
      const quote = await getQuote(ctx.store, ctx.channel, number);
      return quote ? formatQuote(quote) : `${at} there is no quote #${number}.`;
    }
    const quotes = await listQuotes(ctx.store, ctx.channel);
    if (quotes.length === 0) return `There are no quotes yet; moderators can add one with ${ctx.prefix}quote add <text>.`;
    return formatQuote(quotes[Math.floor((ctx.random ?? Math.random)() * quotes.length)]!);
  }

  if (ctx.name === 'giveaway') {
    const [sub, ...rest] = ctx.args.map((arg) => arg.toLowerCase());
    const current = await currentGiveaway(ctx.store, ctx.channel);
    if (!sub) {
      if (current?.status !== 'open') return 'No giveaway is open right now.';
      return `Giveaway open: type ${current.keyword} to enter (closes at ${current.closesAt.slice(11, 16)} UTC).`;
    }
    if (!moderator) return `${at} only moderators can run giveaways.`;
    if (sub === 'start') {
      const [keyword, duration, ...flags] = rest;
      const durationSec = parseDuration(duration) ?? 300;
      const luck = flags.map((flag) => /^luck=(\d+)$/.exec(flag)?.[1]).find(Boolean);
      if (!keyword) return `${at} usage: ${ctx.prefix}giveaway start <keyword> [5m] [luck=2]`;
      const giveaway = await startGiveaway(
        ctx.store,
        ctx.channel,
        { keyword, durationSec, subscriberLuck: luck ? Number(luck) : 1 },
        ctx.user.login,
        ctx.now?.(),
      );
      const minutes = Math.round(durationSec / 60);
      return `Giveaway! Type ${giveaway.keyword} in the next ${minutes >= 1 ? `${minutes} min` : `${durationSec} s`} to enter${giveaway.subscriberLuck > 1 ? ` (subscribers get ${giveaway.subscriberLuck}x luck)` : ''}.`;
    }
    if (sub === 'draw') {
      const { winner, entries } = await drawGiveaway(ctx.store, ctx.channel, (ctx.random ?? Math.random)(), ctx.now?.());
      return winner
        ? `The winner is @${winner.login}! (${entries} ${entries === 1 ? 'entry' : 'entries'})`
        : 'Nobody entered the giveaway.';
    }
    if (sub === 'cancel' || sub === 'end') {
      await cancelGiveaway(ctx.store, ctx.channel);
      return 'The giveaway was cancelled.';
    }
    return `${at} usage: ${ctx.prefix}giveaway start <keyword> [5m] [luck=2] | draw | cancel`;
  }

  // `!deaths-` parses as the name `deaths-` (a dash may end a command name); the operator is not part of it.
  const counter = await getCounter(ctx.store, ctx.channel, ctx.name.replace(/[+\-=]+$/, ''));
  if (!counter) return undefined;
  const op = /([+\-=])$/.exec(ctx.head)?.[1] ?? (ctx.args[0] && /^[+\-=]$/.test(ctx.args[0]) ? ctx.args[0] : undefined);
  if (!op)
    return counter.response
      .replace(/\{count\}/gi, String(await counterValue(ctx.store, ctx.channel, counter.name)))
      .replace(/\{name\}/gi, counter.name);
  if (!moderator) return null;
  const amountArg = /^[+\-=]$/.test(ctx.args[0] ?? '') ? ctx.args[1] : ctx.args[0];
  const amount = amountArg === undefined ? 1 : Number(amountArg);
  if (!Number.isInteger(amount) || Math.abs(amount) > 1e6)
    return `${at} usage: ${ctx.prefix}${counter.name}+ [n], ${ctx.prefix}${counter.name}- [n] or ${ctx.prefix}${counter.name}= <n>`;
  const value =
    op === '='
      ? await setCounter(ctx.store, ctx.channel, counter.name, amountArg === undefined ? 0 : amount)
      : await addToCounter(ctx.store, ctx.channel, counter.name, op === '+' ? amount : -amount);
  return counter.response.replace(/\{count\}/gi, String(value)).replace(/\{name\}/gi, counter.name);
}
