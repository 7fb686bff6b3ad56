import { BitBratError } from '../core/index.js';
import { listReactions, updateReaction } from '../services/reactions/manage.js';
import type { Reaction, ReactionUpdate } from '../services/reactions/reactions.js';
import { API_FLAGS, apiTarget, callApiOrReport, cliConfig, openStore } from './context.js';
import { parseFlags } from './flags.js';

const USAGE =
  'bitbrat reactions list [--json] | set <name> [--on|--off] [--template "text with {user}"] [--default-template] [--shoutout on|off]';

/**
 * `bitbrat reactions list` and `bitbrat reactions set <name> …`: switch a chat reaction on or off, reword
 * it, or turn the raid shoutout on. Goes through the running platform's API with the embedded store (or
 * `--url`); otherwise writes the reaction's rule in the store directly.
 */
export async function reactionsCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  const { values, positionals } = parseFlags('reactions', args, {
    json: { type: 'boolean' },
    ...API_FLAGS,
    on: { type: 'boolean' },
    off: { type: 'boolean' },
    template: { type: 'string' },
    'default-template': { type: 'boolean' },
    shoutout: { type: 'string' },
  });
  const [sub, name, ...extra] = positionals;
  if (sub !== 'list' && sub !== 'set') throw new BitBratError('BAD_REQUEST', `bitbrat reactions: use ${USAGE}`);
  if (sub === 'set' && (!name || extra.length > 0))
    throw new BitBratError(
      'BAD_REQUEST',
      `bitbrat reactions set: name one reaction (follow, subscribe, resubscribe, gift, cheer, raid); put the template in --template "…"`,
    );
  const update = sub === 'set' ? buildUpdate(values) : {};
  const config = cliConfig(env);

  if (config.STORE_DRIVER === 'pglite' || values.url !== undefined) {
    const target = await apiTarget(config, env, { url: values.url, token: values.token });
    const response =
      sub === 'list'
        ? await callApiOrReport('bitbrat reactions', target, 'GET', '/api/reactions')
        : await callApiOrReport('bitbrat reactions', target, 'PUT', `/api/reactions/${encodeURIComponent(name!)}`, update);
    if (!response) return 1;
    return sub === 'list'
      ? print((response.json.items ?? []) as Reaction[], values.json === true)
      : print([response.json as Reaction], values.json === true);
  }
  const store = await openStore(config, env);
  try {
    return sub === 'list'
      ? print(await listReactions(store), values.json === true)
      : print([await updateReaction(store, name!, update)], values.json === true);
  } finally {
    await store.close();
  }
}

function buildUpdate(values: {
  on?: boolean;
  off?: boolean;
  template?: string;
  'default-template'?: boolean;
  shoutout?: string;
}): ReactionUpdate {
  if (values.on && values.off) throw new BitBratError('BAD_REQUEST', 'bitbrat reactions set: give --on or --off, not both');
  if (values.template !== undefined && values['default-template'])
    throw new BitBratError('BAD_REQUEST', 'bitbrat reactions set: give --template or --default-template, not both');
  if (values.shoutout !== undefined && values.shoutout !== 'on' && values.shoutout !== 'off')
    throw new BitBratError('BAD_REQUEST', 'bitbrat reactions set: --shoutout takes on or off');
  const update: ReactionUpdate = {
    ...(values.on ? { enabled: true } : values.off ? { enabled: false } : {}),
    ...(values.template !== undefined ? { template: values.template } : values['default-template'] ? { template: null } : {}),
    ...(values.shoutout !== undefined ? { shoutout: values.shoutout === 'on' } : {}),
  };
  if (Object.keys(update).length === 0) throw new BitBratError('BAD_REQUEST', `bitbrat reactions set: nothing to change; use ${USAGE}`);
  return update;
}

function print(reactions: Reaction[], json: boolean): number {
  if (json) process.stdout.write(JSON.stringify(reactions, null, 2) + '\n');
  else
    for (const reaction of reactions)
      process.stdout.write(
        `${reaction.name.padEnd(12)} ${reaction.enabled ? 'on ' : 'off'}${reaction.shoutout ? ' +shoutout' : ''}  ${reaction.template}\n`,
      );
  return 0;
}
