import { afterAll, beforeAll } from 'vitest';
import { createNatsBus } from '../../src/bus/nats.js';
import { natsAvailable, startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { requireServer } from '../support/wait.js';
import { describeSlipScenarios } from './slip-scenarios.js';

let server: NatsServerHandle | undefined;

beforeAll(async () => {
  requireServer('nats-server', await natsAvailable(), 'install nats-server or set NATS_SERVER_BIN');
  server = await startNatsServer();
});

afterAll(async () => {
  await server?.stop();
});

// Every scenario gets its own prefix, so its own stream and consumers on the shared test server.
describeSlipScenarios('nats', {
  create: async () => createNatsBus({ servers: server!.url, prefix: `s${Math.random().toString(36).slice(2, 10)}.` }),
});
