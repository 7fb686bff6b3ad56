import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageBus } from '../../src/bus/index.js';
import { createNatsBus } from '../../src/bus/nats.js';
import { createEnvelope, createStep, Topic, type Envelope } from '../../src/core/index.js';
import { continueWith, defineService, type Host } from '../../src/runtime/index.js';
import { collect, startTestHost } from '../support/harness.js';
import { natsAvailable, startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { requireServer, waitFor } from '../support/wait.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const encoder = new TextEncoder();
const ACK_WAIT_MS = 1_500;

interface WorkerLine {
  event: string;
  envelopeId?: string;
  attempt?: number;
  instanceId?: string;
}

interface Worker {
  readonly instanceId: string;
  readonly child: ChildProcess;
  readonly lines: WorkerLine[];
  readonly exited: Promise<NodeJS.Signals | number | null>;
  stderr(): string;
}

function startWorker(args: { natsUrl: string; prefix: string; instanceId: string; ackWaitMs: number }): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/sigkill-worker.ts', JSON.stringify(args)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: WorkerLine[] = [];
  let stderr = '';
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as WorkerLine);
    } catch {
      stderr += `[stdout] ${line}\n`;
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-10_000);
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  return { instanceId: args.instanceId, child, lines, exited, stderr: () => stderr };
}

async function stopWorker(worker: Worker): Promise<void> {
  if (worker.child.exitCode !== null || worker.child.signalCode !== null) return;
  worker.child.kill('SIGTERM');
  const timer = setTimeout(() => worker.child.kill('SIGKILL'), 5_000);
  await worker.exited;
  clearTimeout(timer);
}

/** Stands in for ingress-egress: takes the reply off egress and forwards the envelope to finalization. */
const egressStandIn = defineService({
  name: 'egress-standin',
  setup: () => ({ consumers: { [Topic.egress]: { mode: 'stage', next: 'finalization', handle: async () => continueWith() } } }),
});

describe('a worker killed with SIGKILL in the middle of a step on NATS', () => {
  let server: NatsServerHandle | undefined;
  let bus: MessageBus | undefined;
  let egressHost: Host | undefined;
  const workers: Worker[] = [];

  beforeAll(async () => {
    requireServer('nats-server', await natsAvailable(), 'install nats-server or set NATS_SERVER_BIN');
    server = await startNatsServer();
  });

  afterAll(async () => {
    await Promise.all(workers.map((worker) => stopWorker(worker)));
    await egressHost?.stop();
    await bus?.close();
    await server?.stop();
  });

  it('loses nothing: the message goes to the surviving worker and finishes exactly once', async () => {
    const prefix = `k${Math.random().toString(36).slice(2, 10)}.`;
    bus = await createNatsBus({ servers: server!.url, prefix });
    await bus.connect();
    const observer = await collect(bus, [Topic.finalizer, Topic.egress, Topic.deadletter]);
    egressHost = await startTestHost({ services: [egressStandIn], bus });

    for (const instanceId of ['worker-a', 'worker-b'])
      workers.push(startWorker({ natsUrl: server!.url, prefix, instanceId, ackWaitMs: ACK_WAIT_MS }));
    await waitFor(() => workers.every((worker) => worker.lines.some((line) => line.event === 'ready')), {
      timeoutMs: 45_000,
      intervalMs: 50,
      message: `both workers to be ready (${workers.map((worker) => worker.stderr()).join(' | ')})`,
    });

    const envelope: Envelope = createEnvelope({
      type: 'external.chat.message.v1',
      source: { platform: 'test', channel: 'chan', channelId: '1', egressDestination: Topic.egress },
      user: { id: 'u1', name: 'viewer', displayName: 'Viewer', profileImageUrl: '', role: 'viewer' },
      payload: { text: 'are you there?' },
      routingSlip: [createStep('sticky')],
    });
    await bus.publish('internal.sticky.v1', encoder.encode(JSON.stringify(envelope)));

    const victim = await waitFor(
      () => workers.find((worker) => worker.lines.some((line) => line.event === 'handling' && line.envelopeId === envelope.id)),
      {
        timeoutMs: 15_000,
        message: 'a worker to start handling the envelope',
      },
    );
    const survivor = workers.find((worker) => worker !== victim)!;
    expect(victim.lines.find((line) => line.event === 'handling')?.attempt).toBe(1);
    victim.child.kill('SIGKILL');
    expect(await victim.exited).toBe('SIGKILL');

    const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id, 30_000);
    // Leave time for any second delivery (another ack-wait) to show up before counting.
    await new Promise((resolve) => setTimeout(resolve, ACK_WAIT_MS + 1_000));

    expect(observer.envelopes(Topic.egress).filter((value) => value.id === envelope.id)).toHaveLength(1);
    expect(observer.envelopes(Topic.finalizer).filter((value) => value.id === envelope.id)).toHaveLength(1);
    expect(observer.deadLetters()).toHaveLength(0);
    expect(final.outcome).toBe('handled');
    expect(final.routingSlip[0]).toMatchObject({ id: 'sticky', status: 'OK', attempt: 2 });
    expect(final.candidates?.[0]?.text).toBe(`answered by ${survivor.instanceId}`);
    expect(
      survivor.lines.filter((line) => line.event === 'handling' && line.envelopeId === envelope.id).map((line) => line.attempt),
    ).toEqual([2]);
  });
});
