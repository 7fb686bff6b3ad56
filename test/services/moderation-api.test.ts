/**
 * The moderation and toolkit API, in-process (fastify inject, no socket): filters, the log and undo,
 * timers, counters, quotes and giveaways, with clear 4xx answers for bad input and missing rights.
 */
import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import { service as gateway } from '../../src/services/api-gateway/index.js';
import { appendLog, enterGiveaway, currentGiveaway, requestOf, type ModerationLogEntry } from '../../src/services/moderation/index.js';
import type { Store } from '../../src/store/index.js';
import type { Observer } from '../support/harness.js';
import { useStoreAndServices } from '../support/service-test.js';

const MODERATOR = 'moderator-token-01';
const VIEWER = 'viewer-token-0001';

let store: Store;
let host: Host;
let observer: Observer;

useStoreAndServices({
  host: () => ({
    services: [gateway],
    observe: ['internal.moderation.v1'],
    env: { INSTANCE_ID: 'modapi', API_GATEWAY_TOKENS: `${MODERATOR}:moderator,${VIEWER}:viewer` },
  }),
  started: (running) => {
    ({ store, host, observer } = running);
  },
});

async function call(method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, options: { token?: string; body?: unknown } = {}) {
  const response = await host.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${options.token ?? VIEWER}` },
    ...(options.body !== undefined ? { payload: options.body as object } : {}),
  });
  return { status: response.statusCode, json: response.body ? JSON.parse(response.body) : undefined };
}

describe('the moderation API', () => {
  it('shows the default filters and lets a moderator change and reset them', async () => {
    const defaults = await call('GET', '/api/moderation/streamer/filters');
    expect(defaults.status).toBe(200);
    expect(defaults.json).toMatchObject({
      enabled: true,
      links: { enabled: true, exempt: 'subscriber', allow: ['clips.twitch.tv', 'twitch.tv/*/clip', 'twitch.tv/{channel}'] },
      caps: { exempt: 'moderator' },
      escalation: { windowSec: 600, timeouts: [10, 600] },
    });
    expect((await call('PUT', '/api/moderation/streamer/filters', { body: { caps: { enabled: false } } })).status).toBe(403);
    const changed = await call('PUT', '/api/moderation/twitch:streamer/filters', {
      token: MODERATOR,
      body: { caps: { enabled: false }, links: { allow: ['youtube.com'] } },
    });
    expect(changed.status).toBe(200);
    expect(changed.json).toMatchObject({ caps: { enabled: false, ratio: 0.7 }, links: { allow: ['youtube.com'], exempt: 'subscriber' } });
    expect((await call('GET', '/api/moderation/%23Streamer/filters')).json.caps.enabled).toBe(false);
    const reset = await call('DELETE', '/api/moderation/streamer/filters', { token: MODERATOR });
    expect(reset.json.caps.enabled).toBe(true);
  });

  it('answers bad filter settings with a 400 naming every problem', async () => {
    const bad = await call('PUT', '/api/moderation/streamer/filters', {
      token: MODERATOR,
      body: { caps: { ratio: 5 }, links: { exempt: 'everyone' } },
    });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toMatch(/caps\.ratio/);
    expect(bad.json.message).toMatch(/links\.exempt/);
    const regex = await call('PUT', '/api/moderation/streamer/filters', {
      token: MODERATOR,
      body: { blockedTerms: { terms: [{ pattern: '(x)\\1', kind: 'regex' }] } },
    });
    expect(regex.status).toBe(400);
    expect(regex.json.message).toMatch(/not a valid RE2 regex/);
    expect((await call('GET', '/api/moderation/not%20a%20channel/filters')).status).toBe(400);
  });

  it('lists the log newest first, filters it, and asks the moderation step to undo a timeout', async () => {
    /** Logs an action by the bot against alice in the streamer's channel (what `entry` does not say otherwise). */
    const logged = (entry: Pick<ModerationLogEntry, 'at' | 'action'> & Partial<Omit<ModerationLogEntry, 'id'>>) =>
      appendLog(store, {
        channel: 'twitch:streamer',
        status: 'done',
        user: { id: 'u1', login: 'alice' },
        by: 'bot',
        reason: 'links',
        ...entry,
      });
    const older = await logged({ at: '2030-01-01T00:00:00.000Z', action: 'delete', filter: 'links' });
    const timeout = await logged({
      at: '2030-01-01T00:01:00.000Z',
      action: 'timeout',
      filter: 'links',
      durationSec: 10,
      undo: 'untimeout',
    });
    await logged({
      channel: 'twitch:other',
      at: '2030-01-01T00:02:00.000Z',
      action: 'ban',
      status: 'not-permitted',
      user: { id: 'u2', login: 'bob' },
      reason: 'term',
      undo: 'unban',
    });
    const log = await call('GET', '/api/moderation/log?channel=streamer&user=alice');
    expect(log.json.items.map((entry: { id: string }) => entry.id)).toEqual([timeout.id, older.id]);
    expect((await call('GET', `/api/moderation/log/${encodeURIComponent(timeout.id)}`)).json).toMatchObject({
      action: 'timeout',
      durationSec: 10,
      undo: 'untimeout',
    });
    expect((await call('GET', '/api/moderation/log/nope')).status).toBe(404);
    expect((await call('GET', '/api/moderation/log?limit=9999')).status).toBe(400);

    expect((await call('POST', `/api/moderation/log/${encodeURIComponent(timeout.id)}/undo`)).status).toBe(403);
    expect((await call('POST', `/api/moderation/log/${encodeURIComponent(older.id)}/undo`, { token: MODERATOR })).status).toBe(400);
    const undo = await call('POST', `/api/moderation/log/${encodeURIComponent(timeout.id)}/undo`, { token: MODERATOR });
    expect(undo.status).toBe(202);
    expect(undo.json).toMatchObject({ requested: true, logId: timeout.id });
    const published = (await observer.waitFor('internal.moderation.v1', (value) => value.id === undo.json.envelopeId)) as Envelope;
    expect(requestOf(published)).toEqual({ action: 'undo', logId: timeout.id, reason: expect.stringMatching(/^undo by /) });
    expect(published).toMatchObject({
      source: { platform: 'twitch', channel: '#streamer' },
      user: { role: 'moderator' },
      routingSlip: [{ id: 'moderation' }],
    });
  });

  it('asks for an action by a moderator and refuses a malformed one', async () => {
    const timeout = await call('POST', '/api/moderation/streamer/actions', {
      token: MODERATOR,
      body: { action: 'timeout', target: { login: 'troll' }, durationSec: 60 },
    });
    expect(timeout.status).toBe(202);
    expect(
      (
        await call('POST', '/api/moderation/streamer/actions', {
          token: MODERATOR,
          body: { action: 'timeout', target: { login: 'troll' } },
        })
      ).status,
    ).toBe(400);
    expect((await call('POST', '/api/moderation/streamer/actions', { token: MODERATOR, body: { action: 'explode' } })).status).toBe(400);
  });
});

describe('the toolkit API', () => {
  it('keeps timers', async () => {
    const saved = await call('PUT', '/api/toolkit/streamer/timers/socials', {
      token: MODERATOR,
      body: { message: 'Follow us!', intervalMin: 20, minLines: 10 },
    });
    expect(saved.status).toBe(200);
    expect(saved.json).toMatchObject({
      name: 'socials',
      channel: 'twitch:streamer',
      message: 'Follow us!',
      intervalMin: 20,
      minLines: 10,
      enabled: true,
    });
    expect((await call('GET', '/api/toolkit/streamer/timers')).json.items.map((timer: { name: string }) => timer.name)).toEqual([
      'socials',
    ]);
    expect((await call('PUT', '/api/toolkit/streamer/timers/socials', { token: MODERATOR, body: { intervalMin: 0 } })).status).toBe(400);
    expect((await call('PUT', '/api/toolkit/streamer/timers/socials', { body: { message: 'x' } })).status).toBe(403);
    expect((await call('DELETE', '/api/toolkit/streamer/timers/socials', { token: MODERATOR })).status).toBe(204);
    expect((await call('DELETE', '/api/toolkit/streamer/timers/socials', { token: MODERATOR })).status).toBe(404);
  });

  it('keeps counters with their value', async () => {
    const saved = await call('PUT', '/api/toolkit/streamer/counters/deaths', {
      token: MODERATOR,
      body: { response: 'Deaths: {count}', value: 5 },
    });
    expect(saved.json).toEqual({ name: 'deaths', response: 'Deaths: {count}', value: 5 });
    expect((await call('GET', '/api/toolkit/streamer/counters')).json.items).toEqual([
      { name: 'deaths', response: 'Deaths: {count}', value: 5 },
    ]);
    expect((await call('PUT', '/api/toolkit/streamer/counters/bad%20name', { token: MODERATOR, body: {} })).status).toBe(400);
  });

  it('keeps quotes, numbered', async () => {
    const added = await call('POST', '/api/toolkit/streamer/quotes', {
      token: MODERATOR,
      body: { text: 'It was on purpose', game: 'Celeste' },
    });
    expect(added.status).toBe(201);
    expect(added.json).toMatchObject({ number: 1, text: 'It was on purpose', game: 'Celeste' });
    expect((await call('GET', '/api/toolkit/streamer/quotes/1')).json.text).toBe('It was on purpose');
    expect((await call('GET', '/api/toolkit/streamer/quotes/2')).status).toBe(404);
    expect((await call('GET', '/api/toolkit/streamer/quotes/abc')).status).toBe(400);
    expect((await call('POST', '/api/toolkit/streamer/quotes', { token: MODERATOR, body: { text: '' } })).status).toBe(400);
  });

  it('runs a giveaway: start, entries, draw', async () => {
    const started = await call('POST', '/api/toolkit/streamer/giveaways', {
      token: MODERATOR,
      body: { keyword: '!join', durationSec: 120 },
    });
    expect(started.status).toBe(201);
    expect((await call('POST', '/api/toolkit/streamer/giveaways', { token: MODERATOR, body: { keyword: '!again' } })).status).toBe(400);
    await enterGiveaway(store, (await currentGiveaway(store, 'twitch:streamer'))!, { id: 'v1', login: 'winner', role: 'viewer' });
    const current = await call('GET', '/api/toolkit/streamer/giveaways/current');
    expect(current.json).toMatchObject({ keyword: '!join', status: 'open', entries: [{ login: 'winner', weight: 1 }] });
    const drawn = await call('POST', '/api/toolkit/streamer/giveaways/draw', { token: MODERATOR });
    expect(drawn.json).toMatchObject({ winner: { login: 'winner' }, entries: 1, giveaway: { status: 'drawn' } });
    expect((await call('GET', '/api/toolkit/streamer/giveaways')).json.items).toHaveLength(1);
  });
});
