import type { SourceState } from '../../store/index.js';

/** Twitch rejects chat messages longer than this. */
export const MAX_REPLY_LENGTH = 500;

/** `1d 2h 3m`, `1h 23m`, `5m`, `42s`. */
export function formatDuration(ms: number): string {
  const totalSeconds = Math.max(0, Math.floor(ms / 1000));
  if (totalSeconds < 60) return `${totalSeconds}s`;
  const days = Math.floor(totalSeconds / 86_400);
  const hours = Math.floor((totalSeconds % 86_400) / 3_600);
  const minutes = Math.floor((totalSeconds % 3_600) / 60);
  if (days > 0) return `${days}d ${hours}h ${minutes}m`;
  if (hours > 0) return `${hours}h ${minutes}m`;
  return `${minutes}m`;
}

export interface StreamInfo {
  online: boolean;
  /** `1h 23m` when online, `offline` otherwise. */
  uptime: string;
  title?: string;
  game?: string;
}

const text = (value: unknown) => (typeof value === 'string' && value.trim() !== '' ? value : undefined);

/** Stream state from a `sources` document (seed 002): online since `metadata.startedAt` (or the last update). */
export function streamInfo(source: SourceState | undefined, now = Date.now()): StreamInfo {
  const metadata = source?.metadata ?? {};
  const title = text(metadata.title);
  const game = text(metadata.game) ?? text(metadata.gameName) ?? text(metadata.category);
  const base = { ...(title ? { title } : {}), ...(game ? { game } : {}) };
  if (source?.streamStatus !== 'online') return { online: false, uptime: 'offline', ...base };
  const since = Date.parse(text(metadata.startedAt) ?? source.lastStreamUpdate ?? '');
  return { online: true, uptime: Number.isNaN(since) ? 'live' : formatDuration(now - since), ...base };
}

/** Every `{variable}` a command response may use, with what it becomes (shown on the dashboard's Commands page). */
export const TEMPLATE_VARIABLES = {
  user: 'the name of the viewer who used the command',
  touser: 'the first word after the command without its @, else the viewer',
  channel: 'the channel the command was used in',
  args: 'everything typed after the command',
  count: 'how many times the command has been used',
  uptime: 'how long the stream has been live, or "offline"',
  game: 'the game or category being streamed',
  title: 'the stream title',
} as const;

export interface TemplateVariables {
  user: string;
  channel: string;
  args: string[];
  count?: number;
  stream?: StreamInfo;
  /** Counter values for `{count:name}` (see moderation/records.ts `readTemplateCounters`). */
  counters?: Record<string, number>;
}

/** Which variables need the stream state (so it is only read when used). */
export function needsStream(template: string): boolean {
  return /\{(uptime|game|title)\}/i.test(template);
}

/**
 * Fills `{user} {touser} {channel} {args} {uptime} {game} {title} {count}` and `{count:name}` (a counter's
 * value; unknown placeholders stay).
 * Arguments are user input: a reply whose text would start with `/` or `.` only because of them is
 * stripped, so nobody can make the bot run a chat command (`!echo /ban streamer`).
 */
export function renderTemplate(template: string, vars: TemplateVariables): string {
  // Typed by TEMPLATE_VARIABLES so the documented list and what is filled in cannot drift apart.
  const values: Record<keyof typeof TEMPLATE_VARIABLES, string | undefined> & Record<string, string | undefined> = {
    user: vars.user,
    touser: vars.args[0]?.replace(/^@/, '') || vars.user,
    channel: vars.channel,
    args: vars.args.join(' '),
    count: vars.count === undefined ? undefined : String(vars.count),
    uptime: vars.stream?.uptime,
    game: vars.stream ? (vars.stream.game ?? 'unknown') : undefined,
    title: vars.stream ? (vars.stream.title ?? '') : undefined,
  };
  let out = template
    .replace(/\{(\w+)\}/g, (whole, name: string) => values[name.toLowerCase()] ?? whole)
    .replace(/\{count:(\w{1,32})\}/gi, (whole, name: string) =>
      vars.counters?.[name.toLowerCase()] === undefined ? whole : String(vars.counters[name.toLowerCase()]),
    );
  if (!/^[/.]/.test(template.trimStart())) out = out.replace(/^[\s/.]+/, '');
  out = out.trim();
  return out.length > MAX_REPLY_LENGTH ? `${out.slice(0, MAX_REPLY_LENGTH - 1)}…` : out;
}
