/**
 * Chaos run: the whole platform as separate processes (`bitbrat up`) over a NATS server and a
 * PostgreSQL instance started for the run, under steady load. Every service process is killed with
 * SIGKILL in turn, the NATS server is restarted, and PostgreSQL goes away for 10 s. Afterwards every
 * event must be finalized exactly once, with no duplicate replies.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createNatsBus } from '../src/bus/nats.js';
import { createEnvelope, Topic, type Envelope } from '../src/core/index.js';
import { startUp, type UpHandle } from '../src/cli/up.js';
import { loadArchitecture } from '../src/runtime/manifest.js';
import { startNatsServer } from '../test/support/nats-server.js';
import { auditFinalizations, finalizationsPerEvent, finalizedMoreThanOnce } from '../test/support/finalization-audit.js';
import { startPostgres } from '../test/support/pg-server.js';
import { freePort } from '../test/support/ports.js';

export interface ChaosSummary {
  scenario: 'chaos';
  eventsSent: number;
  finalized: number;
  missing: number;
  /** Events whose final record was written more than once (a redelivered final message taking effect). */
  duplicateFinalizations: number;
  /** Envelopes with more than one reply message on the egress topic (redeliveries to the observer aside). */
  duplicateReplies: number;
  replies: number;
  /** Finalized events that carry a reply (the bot may rightly stay silent, e.g. on spam). */
  expectedReplies: number;
  killed: string[];
  maxServiceRecoveryMs: number;
  natsRecoveryMs: number;
  postgresOutageMs: number;
  postgresRecoveryMs: number;
  durationMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function allReady(up: UpHandle): Promise<boolean> {
  const checks = await Promise.all(
    [...up.processes.values()].map((entry) =>
      fetch(`http://127.0.0.1:${entry.port}/readyz`, { signal: AbortSignal.timeout(1_000) }).then(
        (response) => response.ok,
        () => false,
      ),
    ),
  );
  return checks.every(Boolean);
}

async function timeUntil(condition: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error(`not recovered within ${timeoutMs} ms`);
    await sleep(100);
  }
  return Date.now() - started;
}

export async function runChaos(options: { log?: (line: string) => void; ratePerSec?: number } = {}): Promise<ChaosSummary> {
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  const nats = await startNatsServer();
  const postgres = await startPostgres();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-chaos-'));
  const databaseUrl = postgres.url.replace(/\/postgres$/, '/bitbrat');
  const prefix = `chaos${Date.now().toString(36)}.`;
  const serviceLog: string[] = [];
  const up = await startUp({
    services: Object.keys(loadArchitecture().services),
    natsUrl: nats.url,
    databaseUrl,
    basePort: await freePort(),
    dataDir,
    prefix,
    env: { ...process.env, LOG_LEVEL: 'warn', ACK_WAIT_MS: '3000', PATH: process.env.PATH },
    output: (line) => {
      serviceLog.push(line);
      if (serviceLog.length > 2_000) serviceLog.shift();
    },
    restartInitialMs: 200,
    restartMaxMs: 2_000,
  });
  const bus = await createNatsBus({ servers: nats.url, prefix, name: 'chaos-load' });
  const replies = new Map<string, number>();
  const sent: string[] = [];
  let sending = true;
  const summary: Partial<ChaosSummary> = { killed: [] };
  try {
    await up.ready(120_000);
    await auditFinalizations(databaseUrl);
    await bus.connect();
    await bus.subscribe(Topic.egress, 'chaos-observer', async (message) => {
      const envelope = JSON.parse(new TextDecoder().decode(message.data)) as Envelope;
      // A redelivery to this observer (its ack lost in the NATS restart) is not a second reply; a second
      // message on the topic is.
      if (message.deliveryCount === 1) replies.set(envelope.id, (replies.get(envelope.id) ?? 0) + 1);
      await message.ack();
    });
    const interval = 1_000 / (options.ratePerSec ?? 20);
    const load = (async () => {
      let index = 0;
      while (sending) {
        const envelope = createEnvelope({
          type: 'external.chat.message.v1',
          source: { platform: 'chaos', channel: 'chaos', channelId: '1', egressDestination: Topic.egress },
          user: { id: `u${index % 7}`, name: `viewer${index % 7}`, displayName: 'Viewer', profileImageUrl: '', role: 'viewer' },
          payload: { text: '!ping' },
          extra: { message: { id: `m${index}`, text: '!ping' }, qos: { maxResponseMs: 600_000 } },
        });
        index += 1;
        const data = new TextEncoder().encode(JSON.stringify(envelope));
        for (;;) {
          try {
            await bus.publish(Topic.ingress, data, { msgId: envelope.id });
            sent.push(envelope.id);
            break;
          } catch {
            await sleep(200); // NATS down: the load generator retries like a real ingress would
          }
        }
        await sleep(interval);
      }
    })();

    await sleep(3_000);
    let maxRecovery = 0;
    for (const entry of up.processes.values()) {
      const before = entry.child?.pid;
      entry.child?.kill('SIGKILL');
      summary.killed!.push(entry.name);
      const recovery = await timeUntil(
        async () =>
          entry.child !== undefined &&
          entry.child.pid !== before &&
          (await fetch(`http://127.0.0.1:${entry.port}/readyz`, { signal: AbortSignal.timeout(1_000) }).then(
            (r) => r.ok,
            () => false,
          )),
        60_000,
      );
      maxRecovery = Math.max(maxRecovery, recovery);
      log(`killed ${entry.name}; ready again after ${recovery} ms`);
      await sleep(500);
    }
    summary.maxServiceRecoveryMs = maxRecovery;

    await nats.restart();
    summary.natsRecoveryMs = await timeUntil(() => allReady(up), 60_000);
    log(`nats restarted; all services ready after ${summary.natsRecoveryMs} ms`);
    await sleep(1_000);

    const outageStarted = Date.now();
    await postgres.stop();
    await sleep(10_000);
    await postgres.start();
    summary.postgresOutageMs = Date.now() - outageStarted;
    summary.postgresRecoveryMs = await timeUntil(() => allReady(up), 60_000);
    log(`postgres back; all services ready after ${summary.postgresRecoveryMs} ms`);
    await sleep(2_000);
    sending = false;
    await load;

    // Wait for every event to be finalized.
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const deadline = Date.now() + 90_000;
      let finalized = 0;
      for (;;) {
        const { rows } = await client.query('SELECT count(*)::int AS n FROM events WHERE id = ANY($1) AND outcome IS NOT NULL', [sent]);
        finalized = rows[0].n;
        if (finalized >= sent.length || Date.now() > deadline) break;
        await sleep(500);
      }
      const { rows } = await client.query(
        'SELECT count(*) FILTER (WHERE reply_text IS NOT NULL)::int AS r FROM events WHERE id = ANY($1)',
        [sent],
      );
      summary.expectedReplies = rows[0].r;
      summary.eventsSent = sent.length;
      summary.finalized = finalized;
      summary.missing = sent.length - finalized;
      summary.duplicateFinalizations = finalizedMoreThanOnce(await finalizationsPerEvent(databaseUrl, sent)).length;
    } finally {
      await client.end();
    }
    await sleep(1_000);
    summary.replies = replies.size;
    summary.duplicateReplies = [...replies.values()].filter((count) => count > 1).length;
    summary.durationMs = Date.now() - started;
    return { scenario: 'chaos', ...summary } as ChaosSummary;
  } catch (error) {
    throw new Error(`${(error as Error).message}\nlast service log lines:\n${serviceLog.slice(-60).join('\n')}`);
  } finally {
    sending = false;
    await bus.close().catch(() => undefined);
    await up.stop();
    await nats.stop().catch(() => undefined);
    await postgres.dispose().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }
}

export async function benchChaos(): Promise<ChaosSummary> {
  return await runChaos();
}
