/**
 * A child process for test/runtime/nats-sigkill.test.ts: one host with one step service on NATS.
 *
 * Usage: node --import tsx test/support/sigkill-worker.ts '<json>' with
 * `{ "natsUrl", "prefix", "instanceId", "ackWaitMs" }`. The bus comes from the host's own config
 * (MESSAGE_BUS_DRIVER=nats), exactly as in a deployed service.
 *
 * Protocol on stdout, one JSON object per line: `{ "event": "ready" }` once consuming;
 * `{ "event": "handling", "envelopeId", "attempt" }` when the handler starts. The first attempt of an
 * envelope hangs forever (the parent SIGKILLs the process); later attempts reply and finish.
 */
import { createReply } from '../../src/core/index.js';
import { createHost, defineService, handled } from '../../src/runtime/index.js';
import { testArchitecture } from './harness.js';

interface WorkerArgs {
  natsUrl: string;
  prefix: string;
  instanceId: string;
  ackWaitMs: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as WorkerArgs;
const say = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);

const sticky = defineService({
  name: 'sticky',
  setup: () => ({
    consumers: {
      'internal.sticky.v1': {
        mode: 'step',
        maxInFlight: 4,
        ackWaitMs: args.ackWaitMs,
        handle: async (envelope, ctx) => {
          say({ event: 'handling', envelopeId: envelope.id, attempt: ctx.attempt, instanceId: args.instanceId });
          if (ctx.attempt === 1) await new Promise<never>(() => undefined);
          return handled({ ...envelope, candidates: [createReply('sticky', `answered by ${args.instanceId}`)] });
        },
      },
    },
  }),
});

const host = await createHost({
  services: [sticky],
  env: {
    LOG_LEVEL: 'silent',
    MESSAGE_BUS_DRIVER: 'nats',
    NATS_URL: args.natsUrl,
    BUS_PREFIX: args.prefix,
    INSTANCE_ID: args.instanceId,
    PORT: '0',
  },
  architecture: testArchitecture([{ name: 'sticky', consumes: ['internal.sticky.v1'] }]),
  listen: false,
  defaultMetrics: false,
});
await host.start();
say({ event: 'ready', instanceId: args.instanceId });

const shutdown = () => {
  void host.stop().finally(() => process.exit(0));
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
