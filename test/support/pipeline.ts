/**
 * The chat pipeline as the whole-pipeline tests run it: the real services from ingress to the finalizer
 * with a test egress standing in for a platform's, the architecture naming what each consumes, chat
 * envelopes, and the waits those tests share (the final record of a message, a health component, a source).
 */
import { createEnvelope, Topic, type Envelope } from '../../src/core/index.js';
import { continueWith, defineService, type Architecture, type Host, type ServiceDefinition } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import { createCommandsService } from '../../src/services/commands/index.js';
import eventRouter from '../../src/services/event-router/index.js';
import finalizer from '../../src/services/finalizer/index.js';
import { createModerationService } from '../../src/services/moderation/index.js';
import persistence from '../../src/services/persistence/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import type { EventRecord, SourceState, Store } from '../../src/store/index.js';
import { testArchitecture } from './harness.js';
import { waitFor } from './wait.js';

/** Stands in for a platform's egress: logs a line (so a test sees a handler's log), "delivers" the reply, then the runtime finalizes. */
export const testEgress = defineService({
  name: 'test-egress',
  setup: () => ({
    consumers: {
      [Topic.egress]: {
        mode: 'stage',
        next: 'finalization',
        handle: async (envelope, hctx) => {
          hctx.logger.info({ reply: envelope.candidates?.[0]?.text }, 'delivering the reply');
          return continueWith({ ...envelope, delivery: { delivered: true, at: new Date().toISOString(), destination: 'test' } });
        },
      },
    },
  }),
});

/** A chat source, as a platform connector is: it publishes (`host.context('chat-source').publish`) from outside any consumed message. */
export const chatSource = defineService({ name: 'chat-source', setup: () => ({ consumers: {} }) });

/** What each service of the pipeline consumes. */
const CONSUMES: Record<string, string[]> = {
  'chat-source': [],
  auth: [Topic.ingress],
  'event-router': [Topic.authenticated, Topic.router],
  'query-analyzer': ['internal.query-analyzer.v1'],
  moderation: ['internal.moderation.v1'],
  commands: ['internal.commands.v1'],
  'llm-bot': ['internal.llm-bot.v1'],
  persistence: [Topic.ingress],
  finalizer: [Topic.finalizer, Topic.deadletter],
  'test-egress': [Topic.egress],
};

/** The architecture of `services`, each of them one of the pipeline's. */
export function pipelineArchitecture(services: readonly ServiceDefinition[]): Architecture {
  return testArchitecture(
    services.map((service) => {
      const consumes = CONSUMES[service.name];
      if (!consumes) throw new Error(`${service.name} is not a service of the test pipeline`);
      return { name: service.name, consumes };
    }),
  );
}

/**
 * The services a `!ping` passes through, with the test egress, in the order they are started: the chat
 * source, auth, the router, the analyzer, moderation, commands, persistence, the finalizer. `extra` (the
 * LLM bot, say) comes before persistence.
 */
export function pingPipeline(extra: ServiceDefinition[] = []): ServiceDefinition[] {
  return [
    chatSource,
    authService,
    eventRouter,
    createQueryAnalyzer(),
    createModerationService(),
    createCommandsService(),
    ...extra,
    persistence,
    finalizer,
    testEgress,
  ];
}

let counter = 0;

/** A Twitch chat message in #streamer replying through the test egress; by default from a new viewer each time. */
export function chatEnvelope(text: string, user: { login?: string; badges?: string[] } = {}): Envelope {
  counter += 1;
  const login = user.login ?? `viewer${counter}`;
  const badges = user.badges ?? [];
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '1000', egressDestination: Topic.egress },
    user: { id: `id-${login}`, name: login, displayName: login, profileImageUrl: '', role: '' },
    payload: { text, messageId: `m${counter}`, badges, isMod: badges.includes('moderator'), isSubscriber: false, emotes: [] },
    extra: { message: { id: `m${counter}`, text }, qos: { maxResponseMs: 30_000 } },
  });
}

/** The event record of envelope `id` once the finalizer wrote its outcome. */
export function waitForFinalRecord(store: Pick<Store, 'getEvent'>, id: string, timeoutMs = 20_000): Promise<EventRecord> {
  return waitFor(
    async () => {
      const record = await store.getEvent(id);
      return record?.outcome ? record : undefined;
    },
    { timeoutMs, message: `the final record of ${id}` },
  );
}

/** A component of the host's `/readyz` as it reports it. */
export interface ReadyComponent {
  ready: boolean;
  detail?: string;
  configured?: boolean;
}

/** The `/readyz` component `name` (e.g. `kick.kick`) once `accept` holds for it. */
export function waitForComponent(
  host: Host,
  name: string,
  accept: (component: ReadyComponent) => boolean,
  timeoutMs = 10_000,
): Promise<ReadyComponent> {
  return waitFor(
    async () => {
      const component = (await host.app.inject({ method: 'GET', url: '/readyz' })).json().components[name] as ReadyComponent | undefined;
      return component && accept(component) ? component : undefined;
    },
    { timeoutMs, message: `the ${name} component as expected` },
  );
}

/** The `sources` record `id` once `accept` holds for it. */
export function waitForSource(
  store: Pick<Store, 'getSource'>,
  id: string,
  accept: (source: SourceState) => boolean,
  timeoutMs = 10_000,
): Promise<SourceState> {
  return waitFor(
    async () => {
      const source = await store.getSource(id);
      return source && accept(source) ? source : undefined;
    },
    { timeoutMs, message: `the source ${id} as expected` },
  );
}
