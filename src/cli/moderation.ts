/**
 * `bitbrat moderation …` and `bitbrat toolkit …`: the channel's filters, the moderation log and undo,
 * timers, counters, quotes and giveaways. With the embedded store (or `--url`) they go through the running
 * platform's API; otherwise they use the store directly (and the bus, for an undo).
 */
import { BitBratError } from '../core/index.js';
import { stepTopic } from '../core/index.js';
import type { Store } from '../store/index.js';
import * as records from '../services/moderation/records.js';
import { MODERATION_STEP, channelOfKey, createModerationRequest } from '../services/moderation/requests.js';
import { API_FLAGS, apiTarget, callApiOrReport, cliConfig, openBus, openStore } from './context.js';
import { parseFlags } from './flags.js';

export const MODERATION_USAGE = `bitbrat moderation filters <channel> [--set '{"links":{"allow":["youtube.com"]}}'] [--reset]
bitbrat moderation log [--channel c] [--user u] [--limit n]
bitbrat moderation undo <log id>`;
export const TOOLKIT_USAGE = `bitbrat toolkit timers <channel> [set <name> --message "…" [--every 15] [--lines 5] [--off] | delete <name>]
bitbrat toolkit counters <channel> [set <name> [--response "Deaths: {count}"] [--value n] | delete <name>]
bitbrat toolkit quotes <channel> [add "text" [--game g] | delete <number>]
bitbrat toolkit giveaway <channel> [start <keyword> [--seconds 300] [--luck 2] | draw | cancel]`;

/** One operation: how to ask the API, and how to do it on the store directly. */
interface Operation {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  route: string;
  body?: unknown;
  direct(store: Store, env: Record<string, string | undefined>): Promise<unknown>;
}

const FLAGS = {
  ...API_FLAGS,
  set: { type: 'string' },
  reset: { type: 'boolean' },
  channel: { type: 'string' },
  user: { type: 'string' },
  limit: { type: 'string' },
  message: { type: 'string' },
  every: { type: 'string' },
  lines: { type: 'string' },
  off: { type: 'boolean' },
  response: { type: 'string' },
  value: { type: 'string' },
  game: { type: 'string' },
  seconds: { type: 'string' },
  luck: { type: 'string' },
} as const;

const int = (name: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number)) throw new BitBratError('BAD_REQUEST', `--${name} takes a whole number, not "${value}"`);
  return number;
};
const enc = encodeURIComponent;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new BitBratError('BAD_REQUEST', `--set takes JSON, e.g. '{"caps":{"enabled":false}}'`);
  }
}

function moderationOperation(positionals: string[], values: Record<string, unknown>): Operation {
  const [sub, arg] = positionals;
  if (sub === 'filters' && arg) {
    const channel = records.parseChannelKey(arg);
    if (values.reset)
      return {
        method: 'DELETE',
        route: `/api/moderation/${enc(channel)}/filters`,
        direct: (store) => records.resetFilterSettings(store, channel),
      };
    if (typeof values.set === 'string') {
      const patch = parseJson(values.set);
      return {
        method: 'PUT',
        route: `/api/moderation/${enc(channel)}/filters`,
        body: patch,
        direct: (store) => records.updateFilterSettings(store, channel, patch),
      };
    }
    return {
      method: 'GET',
      route: `/api/moderation/${enc(channel)}/filters`,
      direct: (store) => records.getFilterSettings(store, channel),
    };
  }
  if (sub === 'log') {
    const query = {
      ...(values.channel ? { channel: records.parseChannelKey(String(values.channel)) } : {}),
      ...(values.user ? { user: String(values.user) } : {}),
      ...(values.limit ? { limit: int('limit', String(values.limit)) } : {}),
    };
    const search = new URLSearchParams(Object.entries(query).map(([key, value]) => [key, String(value)])).toString();
    return {
      method: 'GET',
      route: `/api/moderation/log${search ? `?${search}` : ''}`,
      direct: async (store) => ({ items: await records.listLog(store, query) }),
    };
  }
  if (sub === 'undo' && arg) {
    return {
      method: 'POST',
      route: `/api/moderation/log/${enc(arg)}/undo`,
      async direct(store, env) {
        const entry = await records.getUndoableLogEntry(store, arg);
        const envelope = createModerationRequest(
          { action: 'undo', logId: arg, reason: 'undo from the CLI' },
          { ...channelOfKey(entry.channel), by: { id: 'cli', login: 'cli', role: 'broadcaster' }, via: 'cli' },
        );
        const bus = await openBus(cliConfig(env));
        try {
          await bus.publish(stepTopic(MODERATION_STEP), new TextEncoder().encode(JSON.stringify(envelope)));
        } finally {
          await bus.close();
        }
        return { requested: true, logId: arg, envelopeId: envelope.id, correlationId: envelope.correlationId };
      },
    };
  }
  throw new BitBratError('BAD_REQUEST', `bitbrat moderation: use\n${MODERATION_USAGE}`);
}

/** What `toolkit timers|counters <channel> set <name>` sends, from the flags. */
const SET_BODY: Record<records.NamedRecords, (name: string, values: Record<string, unknown>) => Record<string, unknown>> = {
  timers: (name, values) => ({
    name,
    message: values.message,
    ...(values.every ? { intervalMin: int('every', String(values.every)) } : {}),
    ...(values.lines ? { minLines: int('lines', String(values.lines)) } : {}),
    enabled: !values.off,
  }),
  counters: (name, values) => ({
    name,
    ...(values.response ? { response: values.response } : {}),
    ...(values.value !== undefined ? { value: int('value', String(values.value)) } : {}),
  }),
};

function toolkitOperation(positionals: string[], values: Record<string, unknown>): Operation {
  const [kind, rawChannel, action, name, ...rest] = positionals;
  if (!kind || !rawChannel) throw new BitBratError('BAD_REQUEST', `bitbrat toolkit: use\n${TOOLKIT_USAGE}`);
  const channel = records.parseChannelKey(rawChannel);
  const base = `/api/toolkit/${enc(channel)}`;
  const need = (what: string) => {
    if (!name) throw new BitBratError('BAD_REQUEST', `bitbrat toolkit ${kind} ${action}: give the ${what}`);
    return name;
  };
  if (kind === 'timers' || kind === 'counters') {
    const named = records.NAMED_RECORDS[kind];
    if (!action) return { method: 'GET', route: `${base}/${kind}`, direct: async (store) => ({ items: await named.list(store, channel) }) };
    if (action === 'delete')
      return {
        method: 'DELETE',
        route: `${base}/${kind}/${enc(need(`${named.noun} name`))}`,
        direct: (store) => named.remove(store, channel, name!),
      };
    if (action === 'set') {
      const body = SET_BODY[kind](need(`${named.noun} name`), values);
      return { method: 'PUT', route: `${base}/${kind}/${enc(name!)}`, body, direct: (store) => named.save(store, channel, body) };
    }
  }
  if (kind === 'quotes') {
    if (!action)
      return { method: 'GET', route: `${base}/quotes`, direct: async (store) => ({ items: await records.listQuotes(store, channel) }) };
    if (action === 'add') {
      const text = [name, ...rest].filter(Boolean).join(' ');
      if (!text) throw new BitBratError('BAD_REQUEST', 'bitbrat toolkit quotes add: give the quote text');
      const body = { text, ...(values.game ? { game: String(values.game) } : {}) };
      return {
        method: 'POST',
        route: `${base}/quotes`,
        body,
        direct: (store) => records.addQuote(store, channel, { ...body, addedBy: 'cli' }),
      };
    }
    if (action === 'delete') {
      const number = int('number', need('quote number'))!;
      return { method: 'DELETE', route: `${base}/quotes/${number}`, direct: (store) => records.deleteQuote(store, channel, number) };
    }
  }
  if (kind === 'giveaway') {
    if (!action)
      return {
        method: 'GET',
        route: `${base}/giveaways`,
        direct: async (store) => ({ items: await records.listGiveaways(store, channel) }),
      };
    if (action === 'start') {
      const body = {
        keyword: need('keyword'),
        ...(values.seconds ? { durationSec: int('seconds', String(values.seconds)) } : {}),
        ...(values.luck ? { subscriberLuck: int('luck', String(values.luck)) } : {}),
      };
      return { method: 'POST', route: `${base}/giveaways`, body, direct: (store) => records.startGiveaway(store, channel, body, 'cli') };
    }
    if (action === 'draw')
      return { method: 'POST', route: `${base}/giveaways/draw`, direct: (store) => records.drawGiveaway(store, channel) };
    if (action === 'cancel')
      return { method: 'POST', route: `${base}/giveaways/cancel`, direct: (store) => records.cancelGiveaway(store, channel) };
  }
  throw new BitBratError('BAD_REQUEST', `bitbrat toolkit: use\n${TOOLKIT_USAGE}`);
}

async function run(
  label: string,
  operation: Operation,
  values: Record<string, unknown>,
  env: Record<string, string | undefined>,
): Promise<number> {
  const config = cliConfig(env);
  let result: unknown;
  if (config.STORE_DRIVER === 'pglite' || values.url !== undefined) {
    const target = await apiTarget(config, env, { url: values.url as string | undefined, token: values.token as string | undefined });
    const response = await callApiOrReport(label, target, operation.method, operation.route, operation.body);
    if (!response) return 1;
    result = response.status === 204 ? { ok: true } : response.json;
  } else {
    const store = await openStore(config, env);
    try {
      result = await operation.direct(store, env);
    } finally {
      await store.close();
    }
    if (result === false) throw new BitBratError('NOT_FOUND', `${label}: nothing to delete`);
    if (result === true) result = { ok: true };
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  return 0;
}

/** `bitbrat moderation …` */
export async function moderationCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  const { values, positionals } = parseFlags('moderation', args, FLAGS);
  return await run('bitbrat moderation', moderationOperation(positionals, values), values, env);
}

/** `bitbrat toolkit …` */
export async function toolkitCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  const { values, positionals } = parseFlags('toolkit', args, FLAGS);
  return await run('bitbrat toolkit', toolkitOperation(positionals, values), values, env);
}
