import { afterAll, beforeAll } from 'vitest';
import { createPubSubBus } from '../../src/bus/pubsub.js';
import { pubsubEmulatorAvailable, startPubSubEmulator, type PubSubEmulatorHandle } from '../support/pubsub-emulator.js';
import { requireServer } from '../support/wait.js';
import { describeSlipScenarios } from './slip-scenarios.js';

let emulator: PubSubEmulatorHandle | undefined;

beforeAll(async () => {
  requireServer('Pub/Sub emulator', pubsubEmulatorAvailable(), 'install the Google Cloud CLI Pub/Sub emulator and java');
  emulator = await startPubSubEmulator();
}, 120_000);

afterAll(async () => {
  await emulator?.stop();
});

// The same routing-slip scenarios as on memory and NATS; every scenario has its own topic prefix.
describeSlipScenarios('pubsub', {
  create: async () =>
    createPubSubBus({ projectId: 'bitbrat-slip', emulatorHost: emulator!.host, prefix: `s${Math.random().toString(36).slice(2, 10)}-` }),
});
