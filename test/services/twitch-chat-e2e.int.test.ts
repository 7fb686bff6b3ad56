/**
 * A Twitch chat line end to end, with every real service between: the real Twurple client reads it from
 * the fake IRC server (ingress-egress), auth identifies the chatter, the router and query-analyzer route
 * it, commands answers, and ingress-egress sends the answer back as a threaded PRIVMSG; persistence and
 * the finalizer record it. Once in the embedded topology (memory bus + PGlite) and once in the server
 * one (NATS JetStream + PostgreSQL).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import { createNatsBus } from '../../src/bus/nats.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import auth from '../../src/services/auth/index.js';
import commands from '../../src/services/commands/index.js';
import eventRouter from '../../src/services/event-router/index.js';
import finalizer from '../../src/services/finalizer/index.js';
import ingressEgress from '../../src/services/ingress-egress/index.js';
import persistence from '../../src/services/persistence/index.js';
import queryAnalyzer from '../../src/services/query-analyzer/index.js';
import moderation from '../../src/services/moderation/index.js';
import { createStore, type EventRecord, type Store } from '../../src/store/index.js';
import { useFakeTwitch } from '../fakes/twitch-api.js';
import { startFakeTwitchIrc, type FakeTwitchIrc } from '../fakes/twitch-irc.js';
import { startTestHost, waitUntilReady } from '../support/harness.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { dropSchema, uniqueSchema } from '../support/pg-server.js';
import { runPostgresUrl } from '../support/run-postgres.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'e2e-chat-token-5f1d';
const CHANNEL = 'e2e_streamer';
const SERVICES = [ingressEgress, auth, eventRouter, queryAnalyzer, moderation, commands, persistence, finalizer];

interface Topology {
  bus: MessageBus;
  store: Store;
  env?: Record<string, string>;
  cleanup(): Promise<void>;
}

function describeTwitchChatEndToEnd(name: string, topology: () => Promise<Topology>) {
  describe(`a Twitch chat line end to end on ${name}`, () => {
    let fake: FakeTwitchIrc;
    let setup: Topology;
    let host: Host;
    let restoreTwurple: (() => void) | undefined;

    beforeAll(async () => {
      fake = await startFakeTwitchIrc({ acceptTokens: [TOKEN] });
      // Twurple validates chat tokens against id.twitch.tv; this sends /auth/* to the fake instead.
      restoreTwurple = useFakeTwitch(fake);
      setup = await topology();
      await setup.store.init();
      host = await startTestHost({
        services: SERVICES,
        bus: setup.bus,
        architecture: loadArchitecture(),
        env: {
          INSTANCE_ID: `e2e-${Math.random().toString(36).slice(2, 8)}`,
          BOT_NAME: 'bitbrat_bot',
          TWITCH_BOT_USERNAME: 'bitbrat_bot',
          TWITCH_CHANNELS: CHANNEL,
          TWITCH_IRC_URL: fake.url,
          TWITCH_ACCESS_TOKEN: TOKEN,
          ...setup.env,
        },
        extra: { store: setup.store },
      });
      await waitUntilReady(host, { timeoutMs: 30_000, message: 'every service ready and the channel joined' });
    }, 120_000);

    afterAll(async () => {
      await host?.stop();
      await setup?.cleanup();
      await fake?.stop();
      restoreTwurple?.();
    });

    it('answers !ping with a threaded PRIVMSG "pong" and records the whole path', async () => {
      const before = fake.messagesTo(CHANNEL).length;
      const messageId = fake.sendChat({ channel: CHANNEL, user: 'chatty_cathy', text: '!ping', tags: { 'user-id': '777001' } });

      const reply = await waitFor(
        () =>
          fake
            .messagesTo(CHANNEL)
            .slice(before)
            .find((message) => message.tags['reply-parent-msg-id'] === messageId),
        {
          timeoutMs: 30_000,
          message: 'the PRIVMSG answering the chat line',
        },
      );
      expect(reply).toMatchObject({ text: 'pong', accepted: true });

      const record = await waitFor(
        async () => {
          const events = await setup.store.listEvents({ userName: 'chatty_cathy', limit: 20 });
          const found = events.items.find((event: EventRecord) => event.final?.message?.id === messageId);
          return found?.outcome ? found : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 100, message: 'the final record of the chat line' },
      );
      expect(record).toMatchObject({
        outcome: 'completed',
        replyText: 'pong',
        replyDelivered: true,
        platform: 'twitch',
        userName: 'chatty_cathy',
      });
      // The router's plan, every step done: analysis, routing, the command that answered.
      expect(record.final!.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual([
        'query-analyzer:OK',
        'moderation:OK',
        'router:OK',
        'commands:OK',
      ]);
      // auth identified the chatter (a viewer, with a viewer's permissions, seen for the first time).
      expect(record.final!.user).toMatchObject({ id: '777001', name: 'chatty_cathy', role: 'viewer', roles: ['viewer'] });
      expect(record.final!.user.permissions?.length).toBeGreaterThan(0);
      expect(record.final!.annotations?.map((annotation) => annotation.kind)).toContain('first-message');
      expect(record.final!.delivery).toMatchObject({ delivered: true, platformMessageIds: [reply.id] });
      // Exactly one answer went out.
      expect(
        fake
          .messagesTo(CHANNEL)
          .slice(before)
          .filter((message) => message.tags['reply-parent-msg-id'] === messageId),
      ).toHaveLength(1);
    });
  });
}

describeTwitchChatEndToEnd('the memory bus and PGlite', async () => {
  const bus = createMemoryBus();
  const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  return {
    bus,
    store,
    cleanup: async () => {
      await bus.close();
      await store.close();
    },
  };
});

let nats: NatsServerHandle | undefined;
describeTwitchChatEndToEnd('NATS JetStream and PostgreSQL', async () => {
  nats = await startNatsServer();
  const url = runPostgresUrl();
  const schema = uniqueSchema('e2e');
  const key = randomBytes(32).toString('base64');
  const bus = await createNatsBus({ servers: nats.url, prefix: `e2e${Math.random().toString(36).slice(2, 8)}.` });
  const store = await createStore({
    driver: 'postgres',
    databaseUrl: url,
    schema,
    secrets: { get: async (name) => (name === 'TOKEN_ENCRYPTION_KEY' ? key : undefined) },
  });
  return {
    bus,
    store,
    env: { TOKEN_ENCRYPTION_KEY: key },
    cleanup: async () => {
      await bus.close();
      await store.close();
      await dropSchema(url, schema);
      await nats?.stop();
    },
  };
});
