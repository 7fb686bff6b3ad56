import { readFile } from 'node:fs/promises';
import { BitBratError } from '../core/index.js';
import { replayDeadLetter } from '../ops/dlq.js';
import type { DeadLetterRecord } from '../store/index.js';
import { API_FLAGS, apiTarget, callApiOrReport, cliConfig, openBus, openStore } from './context.js';
import { parseFlags } from './flags.js';

/**
 * `bitbrat dlq list` / `bitbrat dlq replay <id>`. With the embedded store (one process owns it) the
 * command goes through the running platform's API; with PostgreSQL or Firestore it opens the store and
 * the bus directly, so it also works while no gateway runs.
 */
export async function dlqCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  const { positionals, values } = parseFlags('dlq', args, {
    limit: { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
    'raw-file': { type: 'string' },
    ...API_FLAGS,
  });
  const [sub, id] = positionals;
  if (sub !== 'list' && sub !== 'replay') throw new BitBratError('BAD_REQUEST', 'bitbrat dlq: use "dlq list" or "dlq replay <id>"');
  if (sub === 'replay' && !id)
    throw new BitBratError('BAD_REQUEST', 'bitbrat dlq replay: give the dead letter id (see "bitbrat dlq list")');
  const limit = values.limit ? Number(values.limit) : 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new BitBratError('BAD_REQUEST', 'bitbrat dlq: --limit must be an integer from 1 to 1000');
  const raw = values['raw-file'] ? await readFile(values['raw-file'], 'utf8') : undefined;
  const config = cliConfig(env);

  const viaApi = config.STORE_DRIVER === 'pglite' || values.url !== undefined;
  if (viaApi) {
    const target = await apiTarget(config, env, { url: values.url, token: values.token });
    if (sub === 'list') {
      const response = await callApiOrReport(
        'bitbrat dlq',
        target,
        'GET',
        `/api/deadletters?limit=${limit}${values.all ? '&includeReplayed=true' : ''}`,
      );
      if (!response) return 1;
      return printList((response.json.items ?? response.json) as DeadLetterRecord[], values.json === true);
    }
    const response = await callApiOrReport(
      'bitbrat dlq',
      target,
      'POST',
      `/api/deadletters/${encodeURIComponent(id!)}/replay`,
      raw !== undefined ? { raw } : {},
    );
    if (!response) return 1;
    process.stdout.write(`replayed ${id} to ${response.json.topic} (envelope ${response.json.envelopeId})\n`);
    return 0;
  }

  const store = await openStore(config, env);
  try {
    if (sub === 'list') {
      const page = await store.listDeadLetters({ limit, includeReplayed: values.all === true });
      return printList(page.items, values.json === true);
    }
    const bus = await openBus(config);
    try {
      const result = await replayDeadLetter(store, (topic, data, msgId) => bus.publish(topic, data, { msgId }), id!, { raw });
      process.stdout.write(`replayed ${id} to ${result.topic} (envelope ${result.envelopeId})\n`);
      return 0;
    } finally {
      await bus.close();
    }
  } finally {
    await store.close();
  }
}

function printList(items: DeadLetterRecord[], json: boolean): number {
  if (json) {
    process.stdout.write(JSON.stringify(items, null, 2) + '\n');
    return 0;
  }
  if (items.length === 0) {
    process.stdout.write('no dead letters\n');
    return 0;
  }
  for (const item of items) {
    const letter = item.deadLetter;
    const replayed = item.replayedAt ? ` replayed ${item.replayCount}x (last ${item.replayedAt})` : '';
    process.stdout.write(
      `${item.id}  ${letter.at}  ${letter.reason.code}  ${letter.service}@${letter.topic}  ${letter.reason.message}${replayed}\n`,
    );
  }
  return 0;
}
