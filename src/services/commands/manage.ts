/**
 * Custom command management, shared by chat (`!addcom`, `!editcom`, `!delcom`) and the CLI
 * (`bitbrat commands …`).
 *
 * Chat syntax — options come right after the name, before the response:
 *   !addcom !name [options] response…     add (fails if it exists)
 *   !editcom !name [options] [response…]  change the response and/or options
 *   !delcom !name                         delete (an alias deletes the command it points to)
 * Options:
 *   -cd=<seconds>        cooldown for the command in the channel (default 5)
 *   -ucd=<seconds>       cooldown per user (default 0 = none)
 *   -role=<role>         minimum role: viewer, subscriber, vip, trusted, moderator, broadcaster (default viewer)
 *   -alias=a,b           other names for the command (replaces the list; `-alias=` clears it)
 *   -enabled=true|false  turn the command on or off without deleting it
 */
import type { CommandRecord, Store } from '../../store/index.js';
import { Role, isRole } from '../auth/roles.js';

export const DEFAULT_COOLDOWN_SEC = 5;
export const DEFAULT_USER_COOLDOWN_SEC = 0;
const MAX_COOLDOWN_SEC = 86_400;
const MAX_RESPONSE_LENGTH = 450;
const NAME_RE = /^[\p{L}\p{N}_][\p{L}\p{N}_-]{0,31}$/u;

/** Commands the service answers itself; custom commands and aliases cannot take these names. */
export const BUILTIN_COMMANDS = [
  'help',
  'commands',
  'ping',
  'uptime',
  'addcom',
  'editcom',
  'delcom',
  'scene',
  'quote',
  'giveaway',
] as const;
export type BuiltinCommand = (typeof BUILTIN_COMMANDS)[number];
export const MANAGE_COMMANDS: ReadonlySet<string> = new Set(['addcom', 'editcom', 'delcom']);

export function isBuiltin(name: string): name is BuiltinCommand {
  return (BUILTIN_COMMANDS as readonly string[]).includes(name);
}

export type ManageAction = 'add' | 'edit' | 'delete' | 'list';

export interface CommandInput {
  /** With or without the prefix; case-insensitive. Not needed for `list`. */
  name?: string;
  response?: string;
  aliases?: string[];
  minRole?: string;
  cooldownSec?: number;
  userCooldownSec?: number;
  enabled?: boolean;
  createdBy?: string;
}

export type ManageResult =
  | { ok: true; message: string; command?: CommandRecord; commands?: CommandRecord[] }
  | { ok: false; code: 'BAD_REQUEST' | 'NOT_FOUND'; message: string };

const fail = (message: string, code: 'BAD_REQUEST' | 'NOT_FOUND' = 'BAD_REQUEST'): ManageResult => ({ ok: false, code, message });

/** `!Hello` → `hello`; undefined when not a valid command name. */
export function normalizeName(raw: string | undefined, prefix = '!'): string | undefined {
  if (!raw) return undefined;
  let name = raw.trim();
  if (prefix && name.startsWith(prefix)) name = name.slice(prefix.length);
  name = name.toLowerCase();
  return NAME_RE.test(name) ? name : undefined;
}

/** Finds a command by name or alias. */
export async function findCommand(store: Pick<Store, 'getCommand' | 'listCommands'>, name: string): Promise<CommandRecord | undefined> {
  const direct = await store.getCommand(name);
  if (direct) return direct;
  return (await store.listCommands()).find((command) => command.aliases.includes(name));
}

function checkFields(input: CommandInput): string | undefined {
  if (input.response !== undefined) {
    if (input.response.trim() === '') return 'the response cannot be empty';
    if (input.response.length > MAX_RESPONSE_LENGTH) return `the response is longer than ${MAX_RESPONSE_LENGTH} characters`;
  }
  if (input.minRole !== undefined && (!isRole(input.minRole) || input.minRole === Role.banned || input.minRole === Role.system)) {
    return `unknown role "${input.minRole}" (use viewer, subscriber, vip, trusted, moderator or broadcaster)`;
  }
  for (const [label, value] of [
    ['cooldown', input.cooldownSec],
    ['user cooldown', input.userCooldownSec],
  ] as const) {
    if (value !== undefined && (!Number.isInteger(value) || value < 0 || value > MAX_COOLDOWN_SEC))
      return `the ${label} must be whole seconds between 0 and ${MAX_COOLDOWN_SEC}`;
  }
  return undefined;
}

/** Aliases normalized; an error when one is invalid or taken by a built-in or another command. */
function checkAliases(aliases: string[], own: string, existing: CommandRecord[]): { aliases: string[] } | { error: string } {
  const out: string[] = [];
  for (const raw of aliases) {
    const alias = normalizeName(raw);
    if (!alias) return { error: `"${raw}" is not a valid alias` };
    if (alias === own) continue;
    if (isBuiltin(alias)) return { error: `!${alias} is a built-in command` };
    const owner = existing.find((command) => command.name !== own && (command.name === alias || command.aliases.includes(alias)));
    if (owner) return { error: `!${alias} is already used by !${owner.name}` };
    if (!out.includes(alias)) out.push(alias);
  }
  return { aliases: out };
}

/** Adds, edits, deletes or lists custom commands; expected problems are results, not exceptions. */
export async function manageCommand(store: Store, action: ManageAction, input: CommandInput = {}): Promise<ManageResult> {
  if (action === 'list') {
    const commands = await store.listCommands();
    return {
      ok: true,
      message:
        commands.length === 0 ? 'No custom commands.' : `Custom commands: ${commands.map((command) => `!${command.name}`).join(', ')}`,
      commands,
    };
  }
  const name = normalizeName(input.name);
  if (!name) return fail(input.name ? `"${input.name}" is not a valid command name` : 'a command name is required');
  const problem = checkFields(input);
  if (problem) return fail(problem);
  const existing = await store.listCommands();

  if (action === 'add') {
    if (isBuiltin(name)) return fail(`!${name} is a built-in command`);
    const clash = existing.find((command) => command.name === name || command.aliases.includes(name));
    if (clash) return fail(clash.name === name ? `!${name} already exists (use edit)` : `!${name} is an alias of !${clash.name}`);
    if (input.response === undefined) return fail('a response is required');
    const aliases = checkAliases(input.aliases ?? [], name, existing);
    if ('error' in aliases) return fail(aliases.error);
    const command = await store.upsertCommand({
      name,
      response: input.response.trim(),
      aliases: aliases.aliases,
      minRole: input.minRole ?? Role.viewer,
      cooldownSec: input.cooldownSec ?? DEFAULT_COOLDOWN_SEC,
      userCooldownSec: input.userCooldownSec ?? DEFAULT_USER_COOLDOWN_SEC,
      enabled: input.enabled ?? true,
      ...(input.createdBy ? { createdBy: input.createdBy } : {}),
    });
    return { ok: true, message: `Command !${name} added.`, command };
  }

  const target = existing.find((command) => command.name === name) ?? existing.find((command) => command.aliases.includes(name));
  if (!target) return fail(`!${name} does not exist`, 'NOT_FOUND');

  if (action === 'delete') {
    await store.deleteCommand(target.name);
    return { ok: true, message: `Command !${target.name} deleted.`, command: target };
  }

  const changes = ['response', 'aliases', 'minRole', 'cooldownSec', 'userCooldownSec', 'enabled'].filter(
    (key) => input[key as keyof CommandInput] !== undefined,
  );
  if (changes.length === 0) return fail('nothing to change: give a new response or options');
  const aliases = input.aliases ? checkAliases(input.aliases, target.name, existing) : { aliases: target.aliases };
  if ('error' in aliases) return fail(aliases.error);
  const command = await store.upsertCommand({
    name: target.name,
    response: input.response?.trim() ?? target.response,
    aliases: aliases.aliases,
    minRole: input.minRole ?? target.minRole,
    cooldownSec: input.cooldownSec ?? target.cooldownSec,
    userCooldownSec: input.userCooldownSec ?? target.userCooldownSec,
    enabled: input.enabled ?? target.enabled,
    ...(target.createdBy ? { createdBy: target.createdBy } : {}),
  });
  return { ok: true, message: `Command !${target.name} updated.`, command };
}

/**
 * Parses the arguments of `!addcom`/`!editcom`/`!delcom` (everything after the manage command) into a
 * CommandInput; options are only read between the name and the response.
 */
export function parseManageArgs(args: readonly string[], prefix = '!'): { input: CommandInput } | { error: string } {
  const [rawName, ...rest] = args;
  if (!rawName) return { error: 'usage: !addcom !name [-cd=5 -ucd=0 -role=viewer -alias=a,b] response' };
  const input: CommandInput = { name: prefix && rawName.startsWith(prefix) ? rawName.slice(prefix.length) : rawName };
  let index = 0;
  for (; index < rest.length; index += 1) {
    const match = /^-(\w+)=(.*)$/.exec(rest[index]!);
    if (!match) break;
    const [, key, value] = match as unknown as [string, string, string];
    const seconds = () => (/^\d+$/.test(value) ? Number(value) : Number.NaN);
    switch (key.toLowerCase()) {
      case 'cd':
        input.cooldownSec = seconds();
        break;
      case 'ucd':
        input.userCooldownSec = seconds();
        break;
      case 'role':
        input.minRole = value.toLowerCase();
        break;
      case 'alias':
      case 'aliases':
        input.aliases = value
          .split(',')
          .map((alias) => alias.trim())
          .filter(Boolean);
        break;
      case 'enabled':
        if (!['true', 'false'].includes(value.toLowerCase())) return { error: '-enabled must be true or false' };
        input.enabled = value.toLowerCase() === 'true';
        break;
      default:
        return { error: `unknown option -${key} (use -cd, -ucd, -role, -alias, -enabled)` };
    }
  }
  const response = rest.slice(index).join(' ').trim();
  if (response) input.response = response;
  return { input };
}
