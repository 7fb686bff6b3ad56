import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { MemoryBus } from '../../src/bus/index.js';
import { createEnvelope, createReply, instanceEgressTopic, type DeadLetter, type Envelope } from '../../src/core/index.js';
import { knownSteps, loadArchitecture, type Host } from '../../src/runtime/index.js';
import type { Store } from '../../src/store/index.js';
import { service as auth } from '../../src/services/auth/index.js';
import { service as eventRouter } from '../../src/services/event-router/index.js';
import { service as queryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { service as moderation } from '../../src/services/moderation/index.js';
import { service as commands } from '../../src/services/commands/index.js';
import { service as persistence } from '../../src/services/persistence/index.js';
import { service as finalizer } from '../../src/services/finalizer/index.js';
import {
  createAuthenticator,
  effectiveChatRole,
  ensureEmbeddedToken,
  parseTokenList,
  service as gateway,
} from '../../src/services/api-gateway/index.js';
import { sendCommand } from '../../src/cli/send.js';
import { collect } from '../support/harness.js';
import { useStoreAndServices } from '../support/service-test.js';
import { waitFor } from '../support/wait.js';

const OWNER = 'owner-token-0001';
const MODERATOR = 'moderator-token-01';
const VIEWER = 'viewer-token-0001';
const INSTANCE = 'gwtest';

let bus: MemoryBus;
let store: Store;
let host: Host;
let base: string;

useStoreAndServices({
  host: () => ({
    services: [auth, eventRouter, queryAnalyzer, moderation, commands, persistence, finalizer, gateway],
    listen: true,
    architecture: loadArchitecture(),
    env: {
      INSTANCE_ID: INSTANCE,
      HOST: '127.0.0.1',
      API_GATEWAY_TOKENS: `${OWNER}:owner,${MODERATOR}:moderator,${VIEWER}:viewer`,
      API_GATEWAY_LIVE_POLL_MS: '150',
      RULES_RELOAD_MS: '200',
      // The router believes an LLM is configured, but this host runs no llm-bot: questions never come back.
      LLM_PROVIDER: 'openai',
    },
  }),
  started: (running) => {
    ({ bus, store, host } = running);
    base = `http://127.0.0.1:${host.port}`;
  },
});

// ------------------------------------------------------------------------------------------ helpers

interface Client {
  ws: WebSocket;
  frames: any[];
  send(frame: unknown): void;
  next(predicate: (frame: any) => boolean, timeoutMs?: number): Promise<any>;
}

async function connect(options: { query?: string; token?: string } = {}): Promise<Client> {
  const ws = new WebSocket(`ws://127.0.0.1:${host.port}/ws/v1${options.query ?? ''}`, {
    headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
  });
  const frames: any[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(String(data))));
  await once(ws, 'open');
  return {
    ws,
    frames,
    send: (frame) => ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame)),
    next: (predicate, timeoutMs = 20_000) => waitFor(() => frames.find(predicate), { timeoutMs, message: 'a matching frame' }),
  };
}

async function call(method: string, route: string, options: { token?: string; body?: unknown } = {}) {
  const response = await fetch(base + route, {
    method,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : undefined };
}

const closeAll = (...clients: Client[]) => {
  for (const client of clients) client.ws.close();
};

// ------------------------------------------------------------------------------------------- tokens

describe('api-gateway tokens', () => {
  it('parses token:role lists, treating a bare token as the owner and rejecting unknown roles', () => {
    expect(parseTokenList('aaaaaaaa, bbbbbbbb:viewer ,cccccccc:moderator')).toEqual([
      { token: 'aaaaaaaa', role: 'owner' },
      { token: 'bbbbbbbb', role: 'viewer' },
      { token: 'cccccccc', role: 'moderator' },
    ]);
    expect(() => parseTokenList('aaaaaaaa:admin')).toThrow(/unknown role "admin"/);
    expect(() => parseTokenList('short')).toThrow(/at least 8/);
  });

  it('lets anonymous callers in as viewers only when allowed, and never with a wrong token', () => {
    const open = createAuthenticator([{ token: 'secret-token', role: 'owner' }], true);
    expect(open.authenticate(undefined)).toMatchObject({ ok: true, principal: { role: 'viewer', anonymous: true } });
    expect(open.authenticate('nope-nope')).toMatchObject({ ok: false, code: 'UNAUTHORIZED' });
    expect(open.authenticate('secret-token')).toMatchObject({ ok: true, principal: { role: 'owner', anonymous: false } });
    const closed = createAuthenticator([], false);
    expect(closed.authenticate(undefined).ok).toBe(false);
  });

  it('caps the chat role a console user claims at what the token allows', () => {
    const viewer = { role: 'viewer' as const, label: 'v', anonymous: false };
    const owner = { role: 'owner' as const, label: 'o', anonymous: false };
    expect(effectiveChatRole('broadcaster', viewer)).toBe('vip');
    expect(effectiveChatRole('subscriber', viewer)).toBe('subscriber');
    expect(effectiveChatRole('broadcaster', owner)).toBe('broadcaster');
    expect(effectiveChatRole(undefined, owner)).toBe('viewer');
  });

  it('generates the embedded token once, keeps it in DATA_DIR/gateway-token with mode 0600, and reuses it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'bitbrat-token-'));
    try {
      const first = await ensureEmbeddedToken(path.join(dir, 'data'));
      expect(first.created).toBe(true);
      expect(first.token.length).toBeGreaterThanOrEqual(24);
      expect((await readFile(first.file, 'utf8')).trim()).toBe(first.token);
      expect((await stat(first.file)).mode & 0o777).toBe(0o600);
      const second = await ensureEmbeddedToken(path.join(dir, 'data'));
      expect(second).toMatchObject({ created: false, token: first.token });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------- websocket

describe('api-gateway WebSocket /ws/v1', () => {
  it('refuses a bad token in the Authorization header with HTTP 401 before upgrading', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${host.port}/ws/v1`, { headers: { authorization: 'Bearer wrong-token-123' } });
    const [, response] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
    expect(response.statusCode).toBe(401);
    ws.on('error', () => undefined);
    ws.terminate();
  });

  it('closes a connection without a token with UNAUTHORIZED (4401) when it sends chat before authenticating', async () => {
    const client = await connect();
    const closed = once(client.ws, 'close');
    client.send({ type: 'chat', text: '!ping' });
    const error = await client.next((frame) => frame.type === 'error');
    expect(error.code).toBe('UNAUTHORIZED');
    const [code] = (await closed) as [number];
    expect(code).toBe(4401);
  });

  it('accepts the token as ?token= or as a first auth frame, and closes on a wrong auth frame', async () => {
    const byQuery = await connect({ query: `?token=${VIEWER}` });
    expect((await byQuery.next((frame) => frame.type === 'ready')).role).toBe('viewer');

    const byFrame = await connect();
    byFrame.send({ type: 'auth', token: MODERATOR });
    expect((await byFrame.next((frame) => frame.type === 'ready')).role).toBe('moderator');

    const wrong = await connect();
    const closed = once(wrong.ws, 'close');
    wrong.send({ type: 'auth', token: 'not-a-real-token' });
    expect((await wrong.next((frame) => frame.type === 'error')).code).toBe('UNAUTHORIZED');
    expect(((await closed) as [number])[0]).toBe(4401);
    closeAll(byQuery, byFrame);
  });

  it('delivers the reply to the socket that sent the message and to no other', async () => {
    const alice = await connect({ token: OWNER });
    const bob = await connect({ token: OWNER });
    await alice.next((frame) => frame.type === 'ready');
    await bob.next((frame) => frame.type === 'ready');

    alice.send({ type: 'chat', id: 'alice-1', text: '!ping', user: { name: 'alice' }, channel: 'twoclients' });
    const ack = await alice.next((frame) => frame.type === 'ack' && frame.id === 'alice-1');
    const reply = await alice.next((frame) => frame.type === 'reply' && frame.inReplyTo === 'alice-1');
    expect(reply).toMatchObject({ text: 'pong', envelopeId: ack.envelopeId });

    bob.send({ type: 'chat', id: 'bob-1', text: '!ping', user: { name: 'bob' }, channel: 'twoclients' });
    await bob.next((frame) => frame.type === 'reply' && frame.inReplyTo === 'bob-1');
    // Each saw only its own reply.
    expect(alice.frames.filter((frame) => frame.type === 'reply').map((frame) => frame.inReplyTo)).toEqual(['alice-1']);
    expect(bob.frames.filter((frame) => frame.type === 'reply').map((frame) => frame.inReplyTo)).toEqual(['bob-1']);

    // The finalizer's record shows the whole path and the delivery to this gateway.
    const record = await waitFor(
      async () => {
        const event = await store.getEvent(ack.envelopeId);
        return event?.final?.delivery ? event : undefined;
      },
      { timeoutMs: 20_000, message: 'the final record' },
    );
    expect(record.final!.delivery).toMatchObject({ delivered: true });
    expect(record.final!.delivery!.destination).toContain(`api-gateway:${INSTANCE}`);
    expect(record.final!.source).toMatchObject({
      platform: 'api',
      channel: 'twoclients',
      egressDestination: instanceEgressTopic(INSTANCE),
    });
    expect(record.replyText).toBe('pong');
    closeAll(alice, bob);
  });

  it('records a console message holding NUL and lone surrogates, with U+FFFD in their place and no dead letter', async () => {
    const client = await connect({ token: OWNER });
    await client.next((frame) => frame.type === 'ready');
    // JSON escapes are how a frame carries them: the socket's UTF-8 cannot.
    client.send(
      JSON.stringify({ type: 'chat', id: 'nul-1', text: '!ping \u0000 \ud800', user: { name: 'nuluser' }, channel: 'nulchannel' }),
    );
    const ack = await client.next((frame) => frame.type === 'ack' && frame.id === 'nul-1');
    await client.next((frame) => frame.type === 'reply' && frame.inReplyTo === 'nul-1');
    const record = await waitFor(
      async () => {
        const event = await store.getEvent(ack.envelopeId);
        return event?.final && event.ingress ? event : undefined;
      },
      { timeoutMs: 20_000, message: 'the ingress and final records' },
    );
    expect(record.text).toBe('!ping \uFFFD \uFFFD');
    expect(record.ingress!.envelope.message?.text).toBe('!ping \uFFFD \uFFFD');
    const letters = await store.listDeadLetters({ limit: 200, includeReplayed: true });
    expect(letters.items.filter((letter) => JSON.stringify(letter).includes(ack.envelopeId))).toEqual([]);
    closeAll(client);
  });

  it('answers malformed, oversized, binary and unknown frames with an error frame and keeps the socket usable', async () => {
    const client = await connect({ token: OWNER });
    await client.next((frame) => frame.type === 'ready');
    client.send('this is not json');
    client.send(JSON.stringify({ type: 'chat', text: 'x'.repeat(9_000) }));
    client.send(JSON.stringify({ type: 'shout', text: 'hi' }));
    client.send(JSON.stringify({ type: 'chat', id: 'bad-role', text: 'hi', user: { name: 'eve', role: 'system' } }));
    client.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    await waitFor(() => client.frames.filter((frame) => frame.type === 'error').length >= 5, { message: 'five error frames' });
    const errors = client.frames.filter((frame) => frame.type === 'error');
    expect(errors.every((frame) => frame.code === 'BAD_REQUEST')).toBe(true);
    expect(errors.map((frame) => frame.message)).toEqual([
      expect.stringContaining('not valid JSON'),
      expect.stringMatching(/bytes; the limit is 8192/),
      expect.stringContaining('type must be one of'),
      expect.stringContaining('user.role must be one of'),
      expect.stringContaining('binary'),
    ]);
    expect(errors[3].inReplyTo).toBe('bad-role');
    expect(client.ws.readyState).toBe(WebSocket.OPEN);

    client.send({ type: 'chat', id: 'after-errors', text: '!ping', user: { name: 'carol' }, channel: 'errors' });
    expect((await client.next((frame) => frame.type === 'reply' && frame.inReplyTo === 'after-errors')).text).toBe('pong');
    closeAll(client);
  });

  it('lowers a claimed role to what the token allows and passes it to auth as trusted', async () => {
    const client = await connect({ token: VIEWER });
    await client.next((frame) => frame.type === 'ready');
    client.send({ type: 'chat', id: 'cap-1', text: '!ping', user: { name: 'dave', role: 'broadcaster' }, channel: 'caps' });
    const ack = await client.next((frame) => frame.type === 'ack' && frame.id === 'cap-1');
    expect(ack.role).toBe('vip');
    const record = await waitFor(async () => (await store.getEvent(ack.envelopeId))?.final, { timeoutMs: 20_000 });
    expect(record.user.role).toBe('vip');
    expect(record.payload.trustedRole).toBe('vip');
    closeAll(client);
  });

  it('rate-limits a flooding client with RATE_LIMITED error frames without closing it', async () => {
    const client = await connect({ token: OWNER });
    await client.next((frame) => frame.type === 'ready');
    for (let index = 0; index < 80; index += 1) client.send({ type: 'ping', id: String(index) });
    await waitFor(() => client.frames.filter((frame) => frame.type === 'pong' || frame.type === 'error').length >= 80, {
      message: '80 answers',
    });
    expect(client.frames.filter((frame) => frame.type === 'error' && frame.code === 'RATE_LIMITED').length).toBeGreaterThan(0);
    expect(client.frames.filter((frame) => frame.type === 'pong').length).toBeGreaterThanOrEqual(40);
    expect(client.ws.readyState).toBe(WebSocket.OPEN);
    closeAll(client);
  });

  it('finalizes a reply whose client is gone as not delivered with CLIENT_GONE', async () => {
    const envelope = createEnvelope({
      type: 'external.chat.message.v1',
      source: { platform: 'api', channel: 'gone', channelId: 'gone', egressDestination: instanceEgressTopic(INSTANCE) },
      user: { id: 'ghost', name: 'ghost', displayName: 'ghost', profileImageUrl: '', role: 'viewer' },
      payload: { text: '!ping' },
      extra: { message: { id: 'm-gone', text: '!ping' }, candidates: [createReply('commands', 'pong')] },
    });
    await bus.publish(instanceEgressTopic(INSTANCE), new TextEncoder().encode(JSON.stringify(envelope)));
    const record = await waitFor(async () => (await store.getEvent(envelope.id))?.final, { timeoutMs: 20_000 });
    expect(record.delivery).toMatchObject({ delivered: false, reason: 'CLIENT_GONE' });
  });
});

// ------------------------------------------------------------------------------------------- http api

describe('api-gateway endings without a reply', () => {
  it('tells a console client why a slip ended in a skipped step: an unknown command, a command on cooldown, a refused !addcom', async () => {
    const created = await call('POST', '/api/commands', {
      token: OWNER,
      body: { name: '!slowcmd', response: 'slow answer', userCooldownSec: 60, cooldownSec: 0 },
    });
    expect(created.status).toBe(201);
    const client = await connect({ token: OWNER });
    const ask = async (id: string, text: string, role = 'viewer') => {
      client.send({ type: 'chat', id, text, user: { name: 'ending-tester', role }, channel: 'endings' });
      return await client.next((frame) => frame.inReplyTo === id && (frame.type === 'reply' || frame.type === 'noreply'));
    };
    expect(await ask('e-1', '!nosuchcommand')).toMatchObject({
      type: 'noreply',
      code: 'unknown-command',
      reason: 'unknown command !nosuchcommand',
    });
    expect(await ask('e-2', '!slowcmd')).toMatchObject({ type: 'reply', text: 'slow answer' });
    expect(await ask('e-3', '!slowcmd')).toMatchObject({
      type: 'noreply',
      code: 'cooldown',
      reason: '!slowcmd is on cooldown (60 s per user)',
    });
    expect(await ask('e-4', '!addcom !mine hello')).toMatchObject({
      type: 'reply',
      text: expect.stringMatching(/only moderators can manage commands/),
    });
    // Told once; the next refusal within the refusal cooldown is quiet, and says so.
    expect(await ask('e-5', '!addcom !mine hello')).toMatchObject({
      type: 'noreply',
      code: 'refused',
      reason: expect.stringMatching(/^refused \(only moderators can manage commands\.\); told recently/),
    });
    closeAll(client);
    await call('DELETE', '/api/commands/slowcmd', { token: OWNER });
  });

  it('records the skipped step and still finalizes once, after egress', async () => {
    const client = await connect({ token: OWNER });
    client.send({ type: 'chat', id: 'e-rec', text: '!nosuchcommand2', user: { name: 'ending-recorder' }, channel: 'endings2' });
    const ack = await client.next((frame) => frame.type === 'ack' && frame.id === 'e-rec');
    await client.next((frame) => frame.type === 'noreply' && frame.inReplyTo === 'e-rec');
    const record = await waitFor(async () => {
      const response = await call('GET', `/api/events/${ack.envelopeId}`, { token: OWNER });
      return response.status === 200 && response.json.outcome ? response.json : undefined;
    });
    expect(record.timeline.find((step: { id: string }) => step.id === 'commands')).toMatchObject({ status: 'SKIP' });
    expect(record.final.delivery).toMatchObject({ delivered: false, reason: 'NO_REPLY' });
    expect(record.final.annotations).toEqual(
      expect.arrayContaining([expect.objectContaining({ kind: 'noreply', label: 'unknown-command', source: 'commands' })]),
    );
    closeAll(client);
  });
});

describe('api-gateway HTTP API', () => {
  it('requires a valid token on every /api route', async () => {
    expect((await call('GET', '/api/events')).status).toBe(401);
    expect((await call('GET', '/api/events', { token: 'wrong-token-1' })).status).toBe(401);
    expect((await call('GET', '/api/me', { token: VIEWER })).json).toMatchObject({ role: 'viewer', anonymous: false });
    expect((await call('GET', `/api/me?token=${MODERATOR}`)).json).toMatchObject({ role: 'moderator' });
  });

  it('reports the readiness of every service in architecture.yaml', async () => {
    const { status, json } = await call('GET', '/api/health', { token: VIEWER });
    expect(status).toBe(200);
    const byName = Object.fromEntries(json.services.map((service: any) => [service.name, service]));
    for (const name of ['auth', 'event-router', 'query-analyzer', 'commands', 'persistence', 'finalizer', 'api-gateway']) {
      expect(byName[name]).toMatchObject({ where: 'local', state: 'ready' });
      expect(Object.keys(byName[name].components)).toContain(`${name}.consumers`);
    }
    expect(byName['ingress-egress']).toMatchObject({ where: 'elsewhere', state: 'unknown' });
    expect(byName['api-gateway'].components.bus.ready).toBe(true);
  });

  it('lists sources with the console and a how-to-connect card until a Twitch source exists', async () => {
    let items = (await call('GET', '/api/sources', { token: VIEWER })).json.items;
    expect(items.find((source: any) => source.id === `api:${INSTANCE}`)).toMatchObject({ platform: 'api', status: 'connected' });
    expect(items.find((source: any) => source.id === 'twitch')).toMatchObject({
      status: 'not_configured',
      metadata: { placeholder: true },
    });
    await store.mergeSource({
      id: 'twitch:sources-test',
      platform: 'twitch',
      status: 'connected',
      streamStatus: 'online',
      metrics: { messagesIn: 3 },
    });
    items = (await call('GET', '/api/sources', { token: VIEWER })).json.items;
    expect(items.find((source: any) => source.id === 'twitch:sources-test')).toMatchObject({ status: 'connected', streamStatus: 'online' });
    expect(items.find((source: any) => source.id === 'twitch')).toBeUndefined();
  });

  describe('events', () => {
    const t0 = Date.parse('2024-03-01T10:00:00.000Z');
    const at = (minutes: number) => new Date(t0 + minutes * 60_000).toISOString();
    const records = [
      { id: 'f-1', user: 'alice', channel: 'filters-a', minutes: 0 },
      { id: 'f-2', user: 'bob', channel: 'filters-a', minutes: 1 },
      { id: 'f-3', user: 'alice', channel: 'filters-b', minutes: 2 },
      { id: 'f-4', user: 'carol', channel: 'filters-b', minutes: 3 },
      { id: 'f-5', user: 'alice', channel: 'filters-a', minutes: 4 },
    ];

    beforeAll(async () => {
      await store.recordIngress(
        records.map((record) => ({
          id: record.id,
          correlationId: record.id,
          type: 'test.filter.v1',
          platform: 'test',
          channel: record.channel,
          userId: record.user,
          userName: record.user,
          text: `hello ${record.id}`,
          receivedAt: at(record.minutes),
        })),
      );
      await store.recordFinal([
        {
          id: 'f-4',
          correlationId: 'f-4',
          type: 'test.filter.v1',
          channel: 'filters-b',
          userName: 'carol',
          receivedAt: at(3),
          outcome: 'failed',
          finalizedAt: at(3),
        },
      ]);
    });

    it('filters by type, user, channel, outcome and time, newest first', async () => {
      const ids = async (query: string) =>
        (await call('GET', `/api/events?type=test.filter.v1&${query}`, { token: VIEWER })).json.items.map((item: any) => item.id);
      expect(await ids('')).toEqual(['f-5', 'f-4', 'f-3', 'f-2', 'f-1']);
      expect(await ids('user=alice')).toEqual(['f-5', 'f-3', 'f-1']);
      expect(await ids('channel=filters-b')).toEqual(['f-4', 'f-3']);
      expect(await ids('outcome=failed')).toEqual(['f-4']);
      expect(await ids(`since=${at(1)}&until=${at(3)}`)).toEqual(['f-4', 'f-3', 'f-2']);
      const item = (await call('GET', '/api/events?type=test.filter.v1&limit=1', { token: VIEWER })).json.items[0];
      expect(item).not.toHaveProperty('ingress');
      expect(item).toMatchObject({ id: 'f-5', userName: 'alice', text: 'hello f-5' });
    });

    it('pages with limit and an opaque cursor until there are no more', async () => {
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const { json } = await call(
          'GET',
          `/api/events?type=test.filter.v1&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
          { token: VIEWER },
        );
        expect(json.items.length).toBeLessThanOrEqual(2);
        seen.push(...json.items.map((item: any) => item.id));
        cursor = json.nextCursor;
        pages += 1;
      } while (cursor && pages < 10);
      expect(pages).toBe(3);
      expect(seen).toEqual(['f-5', 'f-4', 'f-3', 'f-2', 'f-1']);
    });

    it('answers 400 listing every problem in the query', async () => {
      const { status, json } = await call('GET', '/api/events?limit=500&since=yesterday&colour=red', { token: VIEWER });
      expect(status).toBe(400);
      expect(json.error).toBe('BAD_REQUEST');
      expect(json.problems).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^limit: must be at most 200/),
          expect.stringMatching(/^since: must be an ISO-8601/),
          expect.stringContaining('colour'),
        ]),
      );
      expect((await call('GET', '/api/events?outcome=maybe', { token: VIEWER })).status).toBe(400);
      expect((await call('GET', `/api/events?since=${at(3)}&until=${at(1)}`, { token: VIEWER })).json.message).toContain(
        'since must not be after until',
      );
      expect((await call('GET', '/api/events?cursor=garbage', { token: VIEWER })).status).toBe(400);
    });

    it('returns one event with its slip timeline, and 404 for an unknown id', async () => {
      const client = await connect({ token: OWNER });
      client.send({ type: 'chat', id: 'timeline-1', text: '!ping', user: { name: 'tina' }, channel: 'timeline' });
      const ack = await client.next((frame) => frame.type === 'ack');
      await client.next((frame) => frame.type === 'reply');
      const event = await waitFor(
        async () => {
          const response = await call('GET', `/api/events/${ack.envelopeId}`, { token: VIEWER });
          return response.status === 200 && response.json.outcome ? response.json : undefined;
        },
        { timeoutMs: 20_000 },
      );
      expect(event.timeline.map((step: any) => [step.id, step.status])).toEqual([
        ['query-analyzer', 'OK'],
        ['moderation', 'SKIP'],
        ['router', 'OK'],
        ['commands', 'OK'],
      ]);
      for (const step of event.timeline) {
        expect(step.attempt).toBe(1);
        expect(step.durationMs).toBeGreaterThanOrEqual(0);
        expect(Date.parse(step.endedAt)).toBeGreaterThanOrEqual(Date.parse(step.startedAt));
      }
      expect(event.final.delivery.delivered).toBe(true);
      const missing = await call('GET', '/api/events/no-such-event', { token: VIEWER });
      expect(missing).toMatchObject({ status: 404, json: { error: 'NOT_FOUND' } });
      closeAll(client);
    });
  });

  describe('dead letters', () => {
    const letter = (id: string, extra: Partial<DeadLetter>): DeadLetter => ({
      kind: 'bitbrat.deadletter.v1',
      id,
      at: new Date().toISOString(),
      reason: { code: 'HANDLER_EXCEPTION', message: 'boom' },
      topic: 'internal.ingress.v1',
      service: 'auth',
      raw: '{}',
      rawEncoding: 'utf8',
      ...extra,
    });

    it('lists, replays to the failed topic, and marks the letter replayed without deleting it', async () => {
      const envelope: Envelope = createEnvelope({
        type: 'external.chat.message.v1',
        source: { platform: 'test', channel: 'dlq', channelId: 'dlq' },
        user: { id: 'zed', name: 'zed', displayName: 'zed', profileImageUrl: '', role: 'viewer' },
        payload: { text: 'replay me' },
        extra: { message: { text: 'replay me' } },
      });
      await store.insertDeadLetter({
        id: 'dl-api-1',
        receivedAt: new Date().toISOString(),
        deadLetter: letter('dl-api-1', {
          raw: JSON.stringify(envelope),
          envelope,
          envelopeId: envelope.id,
          replayTopic: 'internal.ingress.v1',
        }),
      });
      const observer = await collect(bus, ['internal.ingress.v1']);

      const list = await call('GET', '/api/deadletters', { token: VIEWER });
      expect(list.json.summaries.find((item: any) => item.id === 'dl-api-1')).toMatchObject({
        code: 'HANDLER_EXCEPTION',
        service: 'auth',
        replayCount: 0,
      });

      expect((await call('POST', '/api/deadletters/dl-api-1/replay', { token: VIEWER, body: {} })).status).toBe(403);
      expect((await call('POST', '/api/deadletters/no-such-letter/replay', { token: MODERATOR, body: {} })).status).toBe(404);

      const replayed = await call('POST', '/api/deadletters/dl-api-1/replay', { token: MODERATOR, body: {} });
      expect(replayed.status).toBe(200);
      expect(replayed.json).toMatchObject({ id: 'dl-api-1', topic: 'internal.ingress.v1', envelopeId: envelope.id, replayCount: 1 });
      await observer.waitFor('internal.ingress.v1', (value) => value.id === envelope.id);

      const pending = (await call('GET', '/api/deadletters', { token: VIEWER })).json.items.map((item: any) => item.id);
      expect(pending).not.toContain('dl-api-1');
      const all = (await call('GET', '/api/deadletters?includeReplayed=true', { token: VIEWER })).json.items;
      expect(all.find((item: any) => item.id === 'dl-api-1')).toMatchObject({ replayCount: 1, replayedAt: expect.any(String) });
      expect((await call('GET', '/api/deadletters/dl-api-1', { token: VIEWER })).json.deadLetter.reason.code).toBe('HANDLER_EXCEPTION');
      expect((await call('GET', '/api/deadletters/nope', { token: VIEWER })).status).toBe(404);
    });

    it('refuses to replay bytes that are still not a valid envelope', async () => {
      await store.insertDeadLetter({
        id: 'dl-api-2',
        receivedAt: new Date().toISOString(),
        deadLetter: letter('dl-api-2', { raw: '{"not":"an envelope"}', reason: { code: 'ENVELOPE_INVALID', message: 'bad' } }),
      });
      const response = await call('POST', '/api/deadletters/dl-api-2/replay', { token: OWNER, body: {} });
      expect(response.status).toBe(400);
      expect(response.json.message).toContain('still not a valid envelope');
      expect((await store.getDeadLetter('dl-api-2'))!.replayCount).toBe(0);
    });
  });

  describe('rules', () => {
    const rule = {
      id: 'api-test-rule',
      priority: 10,
      enabled: true,
      logic: { '==': [{ var: 'type' }, 'test.never.v1'] },
      action: { outcome: 'handled' },
    };

    it('creates, reads, updates and deletes rules; viewers get 403', async () => {
      expect((await call('POST', '/api/rules', { token: VIEWER, body: rule })).status).toBe(403);
      const created = await call('POST', '/api/rules', { token: MODERATOR, body: rule });
      expect(created.status).toBe(201);
      expect(created.json).toMatchObject({ id: rule.id, priority: 10, action: { outcome: 'handled' } });
      expect((await call('POST', '/api/rules', { token: MODERATOR, body: rule })).status).toBe(409);
      expect((await call('GET', `/api/rules/${rule.id}`, { token: VIEWER })).json.priority).toBe(10);
      const updated = await call('PUT', `/api/rules/${rule.id}`, {
        token: OWNER,
        body: { ...rule, id: undefined, priority: 20, description: 'changed' },
      });
      expect(updated.json).toMatchObject({ priority: 20, description: 'changed' });
      expect((await call('GET', '/api/rules', { token: VIEWER })).json.items.map((item: any) => item.id)).toContain(rule.id);
      expect((await call('DELETE', `/api/rules/${rule.id}`, { token: VIEWER })).status).toBe(403);
      expect((await call('DELETE', `/api/rules/${rule.id}`, { token: MODERATOR })).status).toBe(204);
      expect((await call('DELETE', `/api/rules/${rule.id}`, { token: MODERATOR })).status).toBe(404);
      expect((await call('GET', `/api/rules/${rule.id}`, { token: VIEWER })).status).toBe(404);
      expect((await call('PUT', '/api/rules/never-created', { token: OWNER, body: rule })).status).toBe(400);
      expect((await call('PUT', '/api/rules/never-created', { token: OWNER, body: { ...rule, id: 'never-created' } })).status).toBe(404);
    });

    it('answers 400 with the problems for an invalid rule', async () => {
      const { status, json } = await call('POST', '/api/rules', {
        token: OWNER,
        body: { id: 'bad-rule', priority: 'high', logic: 'always', action: {} },
      });
      expect(status).toBe(400);
      expect(json.problems.join('\n')).toMatch(/priority/);
      expect(json.problems.join('\n')).toMatch(/logic must be a JsonLogic expression/);
      expect(json.problems.join('\n')).toMatch(/an action needs a slip or an outcome/);
    });
  });

  describe('refusing rules it could not run or manage', () => {
    const minimal = { priority: 0, logic: true, action: { outcome: 'handled' } };
    const post = async (body: unknown) => await call('POST', '/api/rules', { token: OWNER, body });

    it('refuses a slip step no service serves, naming it and the known steps', async () => {
      const { status, json } = await post({ ...minimal, id: 'bogus-slip', action: { slip: ['query-analyzer', 'bogus-step'] } });
      expect(status).toBe(400);
      expect(knownSteps()).toEqual(expect.arrayContaining(['commands', 'llm-bot', 'query-analyzer', 'router']));
      expect(json.message).toContain(`step "bogus-step" is served by no service; known steps: ${knownSteps().join(', ')}`);
      expect((await call('GET', '/api/rules/bogus-slip', { token: VIEWER })).status).toBe(404);
    });

    it('refuses ids longer than 64 characters or with characters a URL must escape', async () => {
      const long = await post({ ...minimal, id: 'r'.repeat(150) });
      expect(long.status).toBe(400);
      expect(long.json.message).toMatch(/at most 64 characters/);
      expect((await post({ ...minimal, id: 'a b' })).status).toBe(400);
      expect((await post({ ...minimal, id: 'r'.repeat(64) })).status).toBe(201);
      expect((await call('GET', `/api/rules/${'r'.repeat(64)}`, { token: VIEWER })).status).toBe(200);
      expect((await call('DELETE', `/api/rules/${'r'.repeat(64)}`, { token: OWNER })).status).toBe(204);
    });

    it('refuses unknown JsonLogic operators', async () => {
      const { status, json } = await post({ ...minimal, id: 'unknown-op', logic: { and: [true, { frobnicate: [1] }] } });
      expect(status).toBe(400);
      expect(json.message).toMatch(/logic\.and\.1: unknown operator "frobnicate"/);
    });

    it('refuses regexes with backreferences or lookaround, and accepts a catastrophic one that RE2 runs in linear time', async () => {
      const back = await post({ ...minimal, id: 'backref', logic: { regex: [{ var: 'text' }, '(a)\\1'] } });
      expect(back.status).toBe(400);
      expect(back.json.message).toMatch(/backreferences and lookaround are not supported/);
      expect((await post({ ...minimal, id: 'nested-plus', logic: { regex: [{ var: 'text' }, '^(a+)+$'] } })).status).toBe(201);
      expect((await call('DELETE', '/api/rules/nested-plus', { token: OWNER })).status).toBe(204);
    });

    it('refuses logic nested 2,000 and 50,000 deep with 400, and the rules stay listable', async () => {
      for (const depth of [2_000, 50_000]) {
        // Built as text: JSON.stringify itself would overflow the stack on the deeper one.
        const body = `{"id":"deep-${depth}","logic":${'{"!":['.repeat(depth)}true${']}'.repeat(depth)},"action":{"outcome":"handled"}}`;
        for (const [method, route] of [
          ['POST', '/api/rules'],
          ['PUT', `/api/rules/deep-${depth}`],
        ] as const) {
          const response = await fetch(`${base}${route}`, {
            method,
            headers: { authorization: `Bearer ${OWNER}`, 'content-type': 'application/json' },
            body,
          });
          expect(response.status).toBe(400);
          expect((await response.json()).message).toMatch(/nested deeper than 64 levels/);
        }
      }
      expect((await call('GET', '/api/rules', { token: VIEWER })).status).toBe(200);
    });
  });

  describe('hostile values in paths and queries', () => {
    it("answers NUL in a path or query value with 400 and never the database's text", async () => {
      const requests: Array<[string, string, unknown?]> = [
        ['GET', '/api/events/a%00b'],
        ['GET', '/api/deadletters/a%00b'],
        ['POST', '/api/deadletters/a%00b/replay', {}],
        ['GET', '/api/rules/a%00b'],
        ['PUT', '/api/rules/a%00b', { logic: true, action: { outcome: 'handled' } }],
        ['DELETE', '/api/rules/a%00b'],
        ['GET', '/api/commands/a%00b'],
        ['DELETE', '/api/commands/a%00b'],
        ['GET', '/api/events?type=a%00b'],
        ['GET', '/api/events?user=a%00b'],
        ['GET', '/api/events?userId=a%00b'],
        ['GET', '/api/events?channel=a%00b'],
      ];
      for (const [method, route, body] of requests) {
        const { status, json } = await call(method, route, { token: OWNER, ...(body !== undefined ? { body } : {}) });
        expect({ route, status }).toEqual({ route, status: 400 });
        expect(json.message).toMatch(/must not contain the NUL character/);
        expect(JSON.stringify(json)).not.toMatch(/byte sequence|UTF8|store/);
      }
    });

    it('answers dates outside the years 1 to 9999 with 400', async () => {
      for (const since of ['-271821-04-20T00:00:00Z', '+275760-09-13T00:00:00Z']) {
        const { status, json } = await call('GET', `/api/events?since=${encodeURIComponent(since)}`, { token: VIEWER });
        expect(status).toBe(400);
        expect(json.problems).toEqual(['since: must be between the years 0001 and 9999']);
      }
      expect((await call('GET', `/api/events?since=${encodeURIComponent('0001-01-01T00:00:00Z')}`, { token: VIEWER })).status).toBe(200);
    });
  });

  describe('commands', () => {
    it('creates a command that then answers in chat, edits and deletes it; viewers get 403', async () => {
      const body = { name: '!discord', response: 'Join us at example.invalid/discord', cooldownSec: 0 };
      expect((await call('POST', '/api/commands', { token: VIEWER, body })).status).toBe(403);
      const created = await call('POST', '/api/commands', { token: MODERATOR, body });
      expect(created.status).toBe(201);
      expect(created.json).toMatchObject({ name: 'discord', minRole: 'viewer', cooldownSec: 0, createdBy: 'api:token#2' });

      const client = await connect({ token: OWNER });
      client.send({ type: 'chat', id: 'cmd-1', text: '!discord', user: { name: 'erin' }, channel: 'cmds' });
      expect((await client.next((frame) => frame.type === 'reply' && frame.inReplyTo === 'cmd-1')).text).toBe(
        'Join us at example.invalid/discord',
      );

      const edited = await call('PUT', '/api/commands/discord', { token: OWNER, body: { response: 'New link', minRole: 'subscriber' } });
      expect(edited.json).toMatchObject({ response: 'New link', minRole: 'subscriber' });
      expect((await call('GET', '/api/commands/discord', { token: VIEWER })).json.response).toBe('New link');
      expect((await call('GET', '/api/commands', { token: VIEWER })).json.items.map((item: any) => item.name)).toContain('discord');

      expect((await call('POST', '/api/commands', { token: OWNER, body: { name: 'ping', response: 'x' } })).json.message).toContain(
        'built-in',
      );
      expect((await call('PUT', '/api/commands/discord', { token: OWNER, body: { minRole: 'emperor' } })).status).toBe(400);
      expect((await call('POST', '/api/commands', { token: OWNER, body: { name: 'x', response: 'y', cooldownSec: -1 } })).status).toBe(400);
      expect((await call('DELETE', '/api/commands/discord', { token: MODERATOR })).status).toBe(204);
      expect((await call('DELETE', '/api/commands/discord', { token: MODERATOR })).status).toBe(404);
      expect((await call('PUT', '/api/commands/discord', { token: MODERATOR, body: { response: 'again' } })).status).toBe(404);
      closeAll(client);
    });
  });

  describe('reactions and streams', () => {
    it('lists the reactions, rewords and switches one off for moderators, and refuses bad changes with 400 or 404', async () => {
      const listed = await call('GET', '/api/reactions', { token: VIEWER });
      expect(listed.json.items.map((item: any) => item.name)).toEqual(['follow', 'subscribe', 'resubscribe', 'gift', 'cheer', 'raid']);
      expect((await call('PUT', '/api/reactions/cheer', { token: VIEWER, body: { enabled: false } })).status).toBe(403);
      const changed = await call('PUT', '/api/reactions/cheer', {
        token: MODERATOR,
        body: { enabled: false, template: '{user} cheered {bits}!' },
      });
      expect(changed.json).toMatchObject({ name: 'cheer', enabled: false, template: '{user} cheered {bits}!' });
      expect(await store.getRule('reaction-cheer')).toMatchObject({
        enabled: false,
        action: { annotate: { payload: { template: '{user} cheered {bits}!' } } },
      });
      const unknownVariable = await call('PUT', '/api/reactions/cheer', {
        token: MODERATOR,
        body: { template: '{user} for {months} months' },
      });
      expect(unknownVariable.status).toBe(400);
      expect(unknownVariable.json.message).toContain('unknown variable {months}');
      expect((await call('PUT', '/api/reactions/cheer', { token: MODERATOR, body: { colour: 'red' } })).status).toBe(400);
      expect((await call('PUT', '/api/reactions/hug', { token: MODERATOR, body: { enabled: false } })).status).toBe(404);
      expect((await call('PUT', '/api/reactions/cheer', { token: MODERATOR, body: { enabled: true, template: null } })).json.template).toBe(
        'Thanks for the {bits} bits, {user}!',
      );
    });

    it('shows each Twitch channel’s stream state, and 404 for a channel it does not know', async () => {
      await store.mergeSource({
        id: 'twitch:apistreamer',
        platform: 'twitch',
        streamStatus: 'online',
        viewerCount: 8,
        metadata: { title: 'Live now', game: 'Chess', startedAt: '2026-01-01T10:00:00.000Z' },
      });
      const all = await call('GET', '/api/streams', { token: VIEWER });
      expect(all.json.items).toContainEqual(
        expect.objectContaining({ channel: 'apistreamer', status: 'online', title: 'Live now', game: 'Chess', viewerCount: 8 }),
      );
      expect((await call('GET', '/api/streams/%23ApiStreamer', { token: VIEWER })).json).toMatchObject({
        channel: 'apistreamer',
        startedAt: '2026-01-01T10:00:00.000Z',
      });
      const missing = await call('GET', '/api/streams/nobody', { token: VIEWER });
      expect(missing.status).toBe(404);
      expect(missing.json.message).toContain('TWITCH_CHANNELS');
    });
  });

  it('streams new events and source changes on /api/live', async () => {
    const controller = new AbortController();
    const response = await fetch(`${base}/api/live`, { headers: { authorization: `Bearer ${VIEWER}` }, signal: controller.signal });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const messages: Array<{ event: string; data: any }> = [];
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    void (async () => {
      let buffer = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buffer += value;
          let split;
          while ((split = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, split);
            buffer = buffer.slice(split + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event && data) messages.push({ event, data: JSON.parse(data) });
          }
        }
      } catch {
        // aborted
      }
    })();
    try {
      await waitFor(() => messages.find((message) => message.event === 'sources'), { message: 'the sources snapshot' });
      const client = await connect({ token: OWNER });
      client.send({ type: 'chat', id: 'live-1', text: '!ping', user: { name: 'lively' }, channel: 'live' });
      const ack = await client.next((frame) => frame.type === 'ack');
      await waitFor(
        () => messages.find((message) => message.event === 'event' && message.data.id === ack.envelopeId && message.data.outcome),
        { timeoutMs: 20_000, message: 'the finalized chat event on the live stream' },
      );

      await store.mergeSource({
        id: 'twitch:live-test',
        platform: 'twitch',
        status: 'disconnected',
        lastError: { code: 'NETWORK', message: 'socket closed' },
      });
      const change = await waitFor(() => messages.find((message) => message.event === 'source' && message.data.id === 'twitch:live-test'), {
        message: 'the source change',
      });
      expect(change.data).toMatchObject({ status: 'disconnected', lastError: { message: 'socket closed' } });
      closeAll(client);
    } finally {
      controller.abort();
    }
  });
});

// ---------------------------------------------------------------------------------------------- cli

describe('bitbrat send', () => {
  const output = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { stdout: { write: (text: string) => out.push(text) }, stderr: { write: (text: string) => err.push(text) } } };
  };
  const env = () => ({ LOG_LEVEL: 'silent', DATA_DIR: path.join(tmpdir(), 'bitbrat-send-no-token') });

  it('prints the bot reply and exits 0', async () => {
    const { out, err, io } = output();
    const code = await sendCommand(
      ['!ping', '--url', base, '--token', OWNER, '--user', 'cli-user', '--role', 'moderator', '--channel', 'cli'],
      env(),
      io,
    );
    expect({ code, err }).toEqual({ code: 0, err: [] });
    expect(out.join('')).toBe('pong\n');
  });

  it('takes the token from API_TOKEN', async () => {
    const { out, io } = output();
    expect(await sendCommand(['!ping', '--url', base, '--channel', 'cli2'], { ...env(), API_TOKEN: VIEWER }, io)).toBe(0);
    expect(out.join('')).toBe('pong\n');
  });

  it('explains a refused token and exits 1', async () => {
    const { err, io } = output();
    expect(await sendCommand(['!ping', '--url', base, '--token', 'wrong-token-9'], env(), io)).toBe(1);
    expect(err.join('')).toContain('refused the token');
  });

  it('says so when nothing listens and exits 1', async () => {
    const { err, io } = output();
    expect(await sendCommand(['!ping', '--url', 'http://127.0.0.1:1', '--token', OWNER], env(), io)).toBe(1);
    expect(err.join('')).toContain('cannot connect');
  });

  it('says when the message was processed without a reply, and why, exit 3', async () => {
    const { err, io } = output();
    const code = await sendCommand(['just saying hello to everyone', '--url', base, '--token', OWNER, '--channel', 'quiet'], env(), io);
    expect(code).toBe(3);
    expect(err.join('')).toMatch(/no reply: no rule routes this message \(outcome: unrouted; envelope [0-9a-f-]+\)/);
  });

  it('prints why a command was skipped at once instead of waiting for the timeout, exit 3', async () => {
    const { err, io } = output();
    const started = Date.now();
    const code = await sendCommand(
      ['!nosuchcommand', '--url', base, '--token', OWNER, '--channel', 'quiet', '--timeout', '15000'],
      env(),
      io,
    );
    expect(code).toBe(3);
    expect(err.join('')).toMatch(/no reply: unknown command !nosuchcommand \(outcome: completed; envelope [0-9a-f-]+\)/);
    // Answered by the ending itself, not by giving up: far inside the timeout.
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('times out with a pointer to the event when no reply comes, exit 4', async () => {
    // A question is routed to llm-bot, which this host does not run: nothing ever comes back.
    const { err, io } = output();
    const code = await sendCommand(
      ['what game are we playing today?', '--url', base, '--token', OWNER, '--timeout', '1500', '--channel', 'quiet'],
      env(),
      io,
    );
    expect(code).toBe(4);
    expect(err.join('')).toMatch(/no reply within 1500 ms\. The message was accepted as envelope [0-9a-f-]+/);
  });
});
