import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import { createEnvelope, createStep, Topic, type Envelope } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import eventRouter, { type EventRouterInstance } from '../../src/services/event-router/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { collect, startTestHost } from '../support/harness.js';
import { waitFor } from '../support/wait.js';

const encoder = new TextEncoder();

function chat(text: string, extra: Partial<Envelope> = {}): Envelope {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '1' },
    user: { id: 'u1', name: 'alice', displayName: 'Alice', profileImageUrl: '', role: 'viewer', permissions: ['chat'] },
    payload: { text },
    extra: { message: { text }, ...extra },
  });
}

const testRules = {
  rules: [
    { id: 'enrich-chat', priority: 10, logic: { '==': [{ var: 'stage' }, 'ingress'] }, action: { slip: ['query-analyzer', 'router'] } },
    {
      id: 'commands',
      priority: 10,
      logic: { and: [{ '==': [{ var: 'stage' }, 'enriched'] }, { has_annotation: ['intent', 'command'] }] },
      action: { slip: ['commands'] },
    },
  ],
};

describe('the event router service', () => {
  let store: Store;
  let bus: MessageBus;
  let host: Host | undefined;
  let dir: string;
  let rulesFile: string;

  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    dir = mkdtempSync(join(tmpdir(), 'bitbrat-rules-'));
    rulesFile = join(dir, 'rules.json');
    writeFileSync(rulesFile, JSON.stringify(testRules));
  });
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    // Every test starts with an empty rules table, as on a first start.
    await store.init();
    for (const rule of await store.listRules()) await store.deleteRule(rule.id);
  });
  afterEach(async () => {
    await host?.stop();
    host = undefined;
    await bus?.close();
  });

  const start = async (env: Record<string, string> = {}) => {
    bus = createMemoryBus();
    await bus.connect();
    const observer = await collect(bus, [
      Topic.finalizer,
      Topic.deadletter,
      Topic.egress,
      'internal.query-analyzer.v1',
      'internal.commands.v1',
      'internal.llm-bot.v1',
    ]);
    host = await startTestHost({ services: [eventRouter], bus, env: { RULES_FILE: rulesFile, ...env }, extra: { store } });
    const send = (topic: string, envelope: Envelope) => bus.publish(topic, encoder.encode(JSON.stringify(envelope)));
    return { observer, send, router: host.instance('event-router') as EventRouterInstance };
  };

  it('seeds the empty rules table from RULES_FILE on first start and routes by those rules', async () => {
    const { observer, send } = await start();
    expect((await store.listRules()).map((rule) => rule.id).sort()).toEqual(['commands', 'enrich-chat']);
    const envelope = chat('hello');
    await send(Topic.authenticated, envelope);
    const out: Envelope = await observer.waitFor('internal.query-analyzer.v1', (value) => value.id === envelope.id);
    expect(out.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual(['query-analyzer:PENDING', 'router:PENDING']);
    expect(out.annotations?.find((a) => a.kind === 'route')).toMatchObject({ label: 'enrich-chat', payload: { stage: 'ingress' } });
  });

  it('does not seed again when the table already holds rules', async () => {
    await store.upsertRule({ id: 'only-mine', priority: 1, enabled: true, logic: true, action: { outcome: 'handled' } });
    const { observer, send } = await start();
    expect((await store.listRules()).map((rule) => rule.id)).toEqual(['only-mine']);
    const envelope = chat('hello');
    await send(Topic.authenticated, envelope);
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
    expect(final.outcome).toBe('handled');
  });

  it('seeds the shipped default rules when RULES_FILE is not set', async () => {
    const { observer, send } = await start({ RULES_FILE: '' });
    const ids = (await store.listRules()).map((rule) => rule.id);
    expect(ids).toEqual(
      expect.arrayContaining(['chat-enrichment', 'system-events-recorded', 'commands', 'llm-questions-and-mentions', 'drop-spam']),
    );
    const system = createEnvelope({ type: 'system.stream.online', source: { platform: 'twitch', channel: 'streamer', channelId: '1' } });
    await send(Topic.authenticated, system);
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === system.id);
    expect(final.outcome).toBe('handled');
  });

  it('refuses to start with an unreadable or invalid rules file', async () => {
    const bad = join(dir, 'bad.json');
    // A bad rule is skipped (see router-rules); a file without a list of rules is a start-up error.
    writeFileSync(bad, JSON.stringify({ rules: { id: 'x', logic: true, action: {} } }));
    await expect(start({ RULES_FILE: bad })).rejects.toThrow(/RULES_FILE .* is invalid/);
    await bus.close();
    await expect(start({ RULES_FILE: join(dir, 'missing.json') })).rejects.toThrow(/cannot be read/);
  });

  it('finalizes a message no rule matches as unrouted instead of dropping it', async () => {
    const { observer, send } = await start();
    const envelope = chat('just chatting');
    envelope.routingSlip = [{ ...createStep('query-analyzer'), status: 'OK', attempt: 1 }, createStep('router')];
    envelope.annotations = [{ id: 'a1', kind: 'intent', label: 'other', source: 'query-analyzer', createdAt: new Date().toISOString() }];
    await send(Topic.router, envelope);
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
    expect(final.outcome).toBe('unrouted');
    expect(final.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual(['query-analyzer:OK', 'router:OK']);
    expect(final.annotations?.find((a) => a.kind === 'route')?.label).toBe('unrouted');
  });

  it('re-plans the remaining slip after enrichment and keeps the finished steps as history', async () => {
    const { observer, send } = await start();
    const envelope = chat('!ping');
    const startedAt = new Date(Date.now() - 50).toISOString();
    envelope.routingSlip = [
      { ...createStep('query-analyzer'), status: 'OK', attempt: 1, startedAt, endedAt: startedAt },
      createStep('router'),
    ];
    envelope.annotations = [{ id: 'a1', kind: 'intent', label: 'command', source: 'query-analyzer', createdAt: startedAt }];
    await send(Topic.router, envelope);
    const out: Envelope = await observer.waitFor('internal.commands.v1', (value) => value.id === envelope.id);
    expect(out.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual(['query-analyzer:OK', 'router:OK', 'commands:PENDING']);
    expect(out.routingSlip[0]).toMatchObject({ startedAt, endedAt: startedAt, attempt: 1 });
    expect(out.routingSlip[1]?.endedAt).toBeDefined();
  });

  it('reloads changed rules without a restart (poll) and on reload()', async () => {
    const { observer, send, router } = await start({ RULES_RELOAD_MS: '50' });
    expect(await router.reload()).toBe(false);
    await store.upsertRule({
      id: 'vip-lane',
      priority: 100,
      enabled: true,
      logic: { and: [{ '==': [{ var: 'stage' }, 'ingress'] }, { regex: [{ var: 'text' }, '^hey\\b', 'i'] }] },
      action: { slip: ['llm-bot'] },
    });
    await waitFor(() => router.current().rules.some((rule) => rule.id === 'vip-lane'), {
      timeoutMs: 10_000,
      message: 'the poll to load the new rule',
    });
    const envelope = chat('Hey there');
    await send(Topic.authenticated, envelope);
    const out: Envelope = await observer.waitFor('internal.llm-bot.v1', (value) => value.id === envelope.id);
    expect(out.routingSlip.map((step) => step.id)).toEqual(['llm-bot']);

    await store.deleteRule('vip-lane');
    expect(await router.reload(true)).toBe(true);
    expect(router.current().rules.map((rule) => rule.id)).not.toContain('vip-lane');
  });

  it('ignores an invalid stored rule and keeps routing with the others', async () => {
    await store.upsertRule({ id: 'broken', priority: 100, enabled: true, logic: true, action: { slip: 'not-a-list' } });
    await store.upsertRule({ id: 'fine', priority: 1, enabled: true, logic: true, action: { slip: ['commands'] } });
    const { observer, send, router } = await start();
    expect(router.current().rejected.map((rule) => rule.id)).toEqual(['broken']);
    const envelope = chat('!x');
    await send(Topic.authenticated, envelope);
    await observer.waitFor('internal.commands.v1', (value) => value.id === envelope.id);
  });
});
