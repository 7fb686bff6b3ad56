import { BitBratError } from '../core/index.js';
import { API_FLAGS, apiTarget, callApiOrReport, cliConfig } from './context.js';
import { parseFlags } from './flags.js';

/** What `GET /api/events/stalled` lists (see src/services/api-gateway/stalled.ts). */
interface StalledItem {
  id: string;
  receivedAt: string;
  stalledForMs: number;
  type: string;
  userName?: string;
  text?: string;
  at?: { step: string };
  cause?: string;
}

/**
 * `bitbrat events stalled` / `bitbrat events dead-letter <id>` / `bitbrat events replay <id>`. These go
 * through the running api-gateway in every topology: where an event waits is known to the running engines,
 * not to the store alone.
 */
export async function eventsCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  const { positionals, values } = parseFlags('events', args, {
    limit: { type: 'string' },
    json: { type: 'boolean' },
    reason: { type: 'string' },
    ...API_FLAGS,
  });
  const [sub, id] = positionals;
  if (sub !== 'stalled' && sub !== 'dead-letter' && sub !== 'replay') {
    throw new BitBratError('BAD_REQUEST', 'bitbrat events: use "events stalled", "events dead-letter <id>" or "events replay <id>"');
  }
  if (sub !== 'stalled' && !id)
    throw new BitBratError('BAD_REQUEST', `bitbrat events ${sub}: give the event id (see "bitbrat events stalled")`);
  const limit = values.limit ? Number(values.limit) : 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new BitBratError('BAD_REQUEST', 'bitbrat events: --limit must be an integer from 1 to 1000');
  const target = await apiTarget(cliConfig(env), env, { url: values.url, token: values.token });

  if (sub === 'stalled') {
    const response = await callApiOrReport('bitbrat events', target, 'GET', `/api/events/stalled?limit=${limit}`);
    if (!response) return 1;
    const items = (response.json.items ?? []) as StalledItem[];
    if (values.json) {
      process.stdout.write(JSON.stringify(items, null, 2) + '\n');
      return 0;
    }
    if (items.length === 0) {
      process.stdout.write(
        `no stalled events (none older than ${Math.round((response.json.stalledAfterMs ?? 0) / 1000)} s without a final record)\n`,
      );
      return 0;
    }
    for (const item of items) {
      const where = item.at ? `stalled at ${item.at.step}` : 'stalled (step unknown)';
      const cause = item.cause ? ` — ${item.cause}` : '';
      process.stdout.write(
        `${item.id}  ${item.receivedAt}  ${Math.round(item.stalledForMs / 1000)} s  ${where}${cause}  ${item.type} ${item.userName ?? ''} ${JSON.stringify(item.text ?? '')}\n`,
      );
    }
    return 0;
  }

  const body = values.reason ? { reason: values.reason } : {};
  const response = await callApiOrReport('bitbrat events', target, 'POST', `/api/events/${encodeURIComponent(id!)}/${sub}`, body);
  if (!response) return 1;
  if (sub === 'dead-letter')
    process.stdout.write(`dead-lettered ${id} (dead letter ${response.json.deadLetterId}; replay it with "bitbrat dlq replay")\n`);
  else process.stdout.write(`replayed ${id} as ${response.json.replayId} (conversation ${response.json.correlationId})\n`);
  return 0;
}
