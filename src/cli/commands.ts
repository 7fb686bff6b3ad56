import { BitBratError } from '../core/index.js';
import { manageCommand, parseManageArgs, type ManageAction } from '../services/commands/manage.js';
import type { CommandRecord } from '../store/index.js';
import { API_FLAGS, apiTarget, callApiOrReport, cliConfig, openStore } from './context.js';
import { parseFlags } from './flags.js';

const ACTIONS: Record<string, ManageAction> = { list: 'list', add: 'add', edit: 'edit', delete: 'delete', del: 'delete' };

/**
 * `bitbrat commands list | add !name [-cd=5 -ucd=0 -role=viewer -alias=a,b] response… | edit … | delete !name`
 * (the same syntax as `!addcom` in chat). With the embedded store it goes through the running
 * platform's API; otherwise it writes the store directly.
 */
export async function commandsCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  // Options like -cd=5 belong to the command syntax, so only --json/--url/--token are flags here.
  const flagArgs = args.filter((arg) => arg.startsWith('--'));
  const rest = args.filter((arg) => !arg.startsWith('--'));
  const { values } = parseFlags('commands', flagArgs, { json: { type: 'boolean' }, ...API_FLAGS }, false);
  const [sub, ...words] = rest;
  const action = sub ? ACTIONS[sub] : undefined;
  if (!action)
    throw new BitBratError(
      'BAD_REQUEST',
      'bitbrat commands: use list, add, edit or delete, e.g. bitbrat commands add !discord -cd=30 Join us at discord.gg/example',
    );
  let input = {};
  if (action !== 'list') {
    const parsed = parseManageArgs(words);
    if ('error' in parsed) throw new BitBratError('BAD_REQUEST', `bitbrat commands ${sub}: ${parsed.error}`);
    input = parsed.input;
  }
  const config = cliConfig(env);

  if (config.STORE_DRIVER === 'pglite' || values.url !== undefined) {
    const target = await apiTarget(config, env, { url: values.url, token: values.token });
    const named = input as { name?: string };
    const route = `/api/commands/${encodeURIComponent(named.name ?? '')}`;
    const response =
      action === 'list'
        ? await callApiOrReport('bitbrat commands', target, 'GET', '/api/commands')
        : action === 'add'
          ? await callApiOrReport('bitbrat commands', target, 'POST', '/api/commands', input)
          : action === 'edit'
            ? await callApiOrReport('bitbrat commands', target, 'PUT', route, input)
            : await callApiOrReport('bitbrat commands', target, 'DELETE', route);
    if (!response) return 1;
    if (action === 'list') return print((response.json.items ?? response.json) as CommandRecord[], values.json === true);
    process.stdout.write(`${action === 'delete' ? 'deleted' : 'saved'} !${named.name}\n`);
    return 0;
  }

  const store = await openStore(config, env);
  try {
    const result = await manageCommand(store, action, action === 'list' ? input : { ...input, createdBy: 'cli' });
    if (!result.ok) {
      process.stderr.write(`bitbrat commands ${sub}: ${result.message}\n`);
      return result.code === 'NOT_FOUND' ? 1 : 2;
    }
    if (action === 'list') return print(result.commands ?? [], values.json === true);
    process.stdout.write(result.message + '\n');
    return 0;
  } finally {
    await store.close();
  }
}

function print(commands: CommandRecord[], json: boolean): number {
  if (json) process.stdout.write(JSON.stringify(commands, null, 2) + '\n');
  else if (commands.length === 0) process.stdout.write('no custom commands\n');
  else
    for (const command of commands)
      process.stdout.write(
        `!${command.name}${command.aliases.length ? ` (${command.aliases.map((alias) => '!' + alias).join(', ')})` : ''}  [${command.minRole}, cd ${command.cooldownSec}s, ucd ${command.userCooldownSec}s, used ${command.uses}x${command.enabled ? '' : ', disabled'}]  ${command.response}\n`,
      );
  return 0;
}
