/**
 * The streamer toolkit: counters, quotes and giveaways through the commands service, the records on the
 * embedded store, and timers under an injected clock.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Topic } from '../../src/core/index.js';
import { createCommandsService, manageCommand, renderTemplate } from '../../src/services/commands/index.js';
import { parseDuration } from '../../src/services/commands/toolkit.js';
import {
  createTimerRunner,
  currentGiveaway,
  enterGiveaway,
  linesKey,
  listEntries,
  pickWinner,
  saveCounter,
  saveTimer,
  startGiveaway,
  drawGiveaway,
  timerDue,
  updateFilterSettings,
  getFilterSettings,
  ensureModerationStep,
} from '../../src/services/moderation/index.js';
import type { Store } from '../../src/store/index.js';
import { sayToCommands } from '../support/commands.js';
import { startOnMemoryBus, type MemoryBusHost } from '../support/harness.js';
import { releaseAfterAll, useEmbeddedStore } from '../support/service-test.js';

const CHANNEL = 'twitch:streamer';
const viewer = { id: 'v1', name: 'alice', role: 'viewer' };
const _subscriber = { id: 's1', name: 'sam', role: 'subscriber' };
const moderator = { id: 'm1', name: 'mia', role: 'moderator' };

let store: Store;

useEmbeddedStore((opened) => (store = opened));

describe('toolkit commands in chat', () => {
  let running: MemoryBusHost;

  beforeAll(async () => {
    running = await startOnMemoryBus({
      services: [createCommandsService()],
      observe: [Topic.egress, Topic.finalizer, Topic.deadletter],
      extra: { store },
    });
    await store.mergeSource({
      id: 'twitch:streamer',
      platform: 'twitch',
      streamStatus: 'online',
      metadata: { startedAt: new Date().toISOString(), game: 'Celeste' },
    });
  });
  releaseAfterAll(() => [running?.host, running?.bus]);

  async function say(text: string, who = viewer): Promise<string | undefined> {
    const out = await sayToCommands(running.bus, running.observer, {
      text,
      who,
      source: { platform: 'twitch', channel: '#streamer', channelId: '1001' },
    });
    return out.candidates?.[0]?.text;
  }

  it('shows a counter to everyone and lets only moderators change it', async () => {
    await saveCounter(store, CHANNEL, { name: 'deaths', response: 'Deaths: {count}' });
    expect(await say('!deaths')).toBe('Deaths: 0');
    expect(await say('!deaths+')).toBeUndefined();
    expect(await say('!deaths+', moderator)).toBe('Deaths: 1');
    expect(await say('!deaths+ 3', moderator)).toBe('Deaths: 4');
    expect(await say('!deaths-', moderator)).toBe('Deaths: 3');
    expect(await say('!deaths= 10', moderator)).toBe('Deaths: 10');
    expect(await say('!deaths')).toBe('Deaths: 10');
  });

  it('fills {count:name} in any custom command', async () => {
    await manageCommand(store, 'add', { name: 'stats', response: 'We died {count:deaths} times, {count:nope} stays', cooldownSec: 0 });
    expect(await say('!stats')).toBe('We died 10 times, {count:nope} stays');
    expect(renderTemplate('{count:deaths}', { user: 'a', channel: 'c', args: [], counters: { deaths: 2 } })).toBe('2');
  });

  it('adds quotes with the game and date, and reads one by number or at random', async () => {
    expect(await say('!quote add the floor is lava')).toMatch(/only VIPs and moderators/);
    expect(await say('!quote add the floor is lava', moderator)).toBe('Added quote #1.');
    expect(await say('!quote add "never again"', moderator)).toBe('Added quote #2.');
    const today = new Date().toISOString().slice(0, 10);
    expect(await say('!quote 1')).toBe(`#1: "the floor is lava" [Celeste, ${today}]`);
    expect(await say('!quote #2')).toBe(`#2: "never again" [Celeste, ${today}]`);
    expect(await say('!quote 99')).toBe('@alice there is no quote #99.');
    expect(await say('!quote')).toMatch(/^#[12]: /);
    expect(await say('!quote del 2')).toMatch(/only moderators/);
    expect(await say('!quote del 2', moderator)).toBe('Deleted quote #2.');
    expect(await say('!quote 2')).toBe('@alice there is no quote #2.');
  });

  it('runs a giveaway from chat: start, status, a second start refused, draw', async () => {
    expect(await say('!giveaway start !join 2m')).toMatch(/only moderators/);
    expect(await say('!giveaway start !join 2m luck=3', moderator)).toBe(
      'Giveaway! Type !join in the next 2 min to enter (subscribers get 3x luck).',
    );
    expect(await say('!giveaway')).toMatch(/^Giveaway open: type !join to enter/);
    expect(await say('!giveaway start !other', moderator)).toMatch(/already open/);
    const giveaway = (await currentGiveaway(store, CHANNEL))!;
    expect(await enterGiveaway(store, giveaway, { id: 'v9', login: 'vic', role: 'viewer' })).toBe(true);
    expect(await say('!giveaway draw', moderator)).toBe('The winner is @vic! (1 entry)');
  });
});

describe('toolkit records', () => {
  it('records one entry per user with subscriber luck, and draws by weight leaving earlier winners out', async () => {
    const channel = 'twitch:giveaways';
    const giveaway = await startGiveaway(store, channel, { keyword: '!Join', durationSec: 60, subscriberLuck: 4 }, 'mia');
    expect(giveaway.keyword).toBe('!join');
    expect(await enterGiveaway(store, giveaway, { id: 'v1', login: 'alice', role: 'viewer' })).toBe(true);
    expect(await enterGiveaway(store, giveaway, { id: 'v1', login: 'alice', role: 'viewer' })).toBe(false);
    expect(await enterGiveaway(store, giveaway, { id: 's1', login: 'sam', role: 'subscriber' })).toBe(true);
    expect(await enterGiveaway(store, giveaway, { id: 'late', login: 'late', role: 'viewer' }, Date.parse(giveaway.closesAt) + 1)).toBe(
      false,
    );
    const entries = await listEntries(store, giveaway);
    expect(entries.map((entry) => [entry.login, entry.weight]).sort()).toEqual([
      ['alice', 1],
      ['sam', 4],
    ]);
    // Entries are listed by user id (s1 before v1), so the pool is sam [0, 4) then alice [4, 5).
    expect(pickWinner(entries, new Set(), 0.1)?.login).toBe('sam');
    expect(pickWinner(entries, new Set(), 0.9)?.login).toBe('alice');
    const first = await drawGiveaway(store, channel, 0.1);
    expect(first.winner?.login).toBe('sam');
    const second = await drawGiveaway(store, channel, 0.1);
    expect(second.winner?.login).toBe('alice');
    expect(second.giveaway.winners.map((winner) => winner.login)).toEqual(['sam', 'alice']);
  });

  it('stores filter settings per channel and refuses bad ones with every problem', async () => {
    const saved = await updateFilterSettings(store, 'twitch:filters', { links: { allow: ['youtube.com'] }, caps: { enabled: false } });
    expect(saved.links.allow).toEqual(['youtube.com']);
    expect(saved.links.exempt).toBe('subscriber');
    expect((await getFilterSettings(store, 'twitch:filters')).caps.enabled).toBe(false);
    expect((await getFilterSettings(store, 'twitch:other')).caps.enabled).toBe(true);
    await expect(updateFilterSettings(store, 'twitch:filters', { caps: { ratio: 7 }, links: { exempt: 'nobody' } })).rejects.toThrow(
      /caps\.ratio.*links\.exempt|links\.exempt.*caps\.ratio/,
    );
    await expect(
      updateFilterSettings(store, 'twitch:filters', { blockedTerms: { terms: [{ pattern: '(a)\\1', kind: 'regex' }] } }),
    ).rejects.toThrow(/not a valid RE2 regex/);
    await expect(updateFilterSettings(store, 'twitch:filters', { bogus: true })).rejects.toThrow(/bogus/);
  });

  it('adds the moderation step to an older installation’s default chat-enrichment rule, and leaves a changed one alone', async () => {
    const logic = { '==': [{ var: 'stage' }, 'ingress'] };
    await store.upsertRule({ id: 'chat-enrichment', priority: 500, enabled: true, logic, action: { slip: ['query-analyzer', 'router'] } });
    expect(await ensureModerationStep(store)).toBe(true);
    expect((await store.getRule('chat-enrichment'))?.action).toEqual({ slip: ['query-analyzer', 'moderation', 'router'] });
    expect(await ensureModerationStep(store)).toBe(false);
    await store.upsertRule({
      id: 'chat-enrichment',
      priority: 500,
      enabled: true,
      logic,
      action: { slip: ['query-analyzer', 'my-step', 'router'] },
    });
    expect(await ensureModerationStep(store)).toBe(false);
    expect((await store.getRule('chat-enrichment'))?.action).toEqual({ slip: ['query-analyzer', 'my-step', 'router'] });
    await store.deleteRule('chat-enrichment');
  });

  it('parses giveaway durations', () => {
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('5m')).toBe(300);
    expect(parseDuration('1h')).toBe(3_600);
    expect(parseDuration('soon')).toBeUndefined();
  });
});

describe('timers under an injected clock', () => {
  it('is due only while live, after the interval and after enough chat', () => {
    const timer = {
      name: 't',
      channel: 'twitch:x',
      message: 'm',
      intervalMin: 10,
      minLines: 5,
      enabled: true,
      lastRunAt: 0,
      linesAtLastRun: 100,
    };
    expect(timerDue(timer, { now: 10 * 60_000, live: true, lines: 105, since: 0 })).toBe(true);
    expect(timerDue(timer, { now: 10 * 60_000, live: false, lines: 105, since: 0 })).toBe(false);
    expect(timerDue(timer, { now: 10 * 60_000 - 1, live: true, lines: 105, since: 0 })).toBe(false);
    expect(timerDue(timer, { now: 10 * 60_000, live: true, lines: 104, since: 0 })).toBe(false);
    expect(timerDue({ ...timer, enabled: false }, { now: 10 * 60_000, live: true, lines: 105, since: 0 })).toBe(false);
  });

  it('posts every N minutes while live and only after M chat lines since the last one', async () => {
    const channel = 'twitch:timers';
    let clock = Date.parse('2030-01-01T00:00:00Z');
    let live = true;
    const sent: string[] = [];
    await saveCounter(store, channel, { name: 'wins', value: 7 });
    await saveTimer(store, channel, {
      name: 'socials',
      message: 'Follow {channel} on socials! Wins: {count:wins}',
      intervalMin: 15,
      minLines: 3,
    });
    const runner = createTimerRunner({
      store,
      now: () => clock,
      isLive: async () => live,
      send: async (_channel, text) => void sent.push(text),
      logger: { warn: () => undefined },
    });
    const chat = async (lines: number) => {
      for (let index = 0; index < lines; index += 1) await store.incrementCounter(linesKey(channel), 1);
    };
    const tick = async () => (await runner.tick()).filter((name) => name.startsWith(channel));

    await chat(5);
    clock += 14 * 60_000;
    expect(await tick()).toEqual([]);
    clock += 60_000;
    expect(await tick()).toEqual(['twitch:timers/socials']);
    expect(sent).toEqual(['Follow timers on socials! Wins: 7']);

    // Fifteen minutes later, but only two lines of chat since: it waits.
    clock += 15 * 60_000;
    await chat(2);
    expect(await tick()).toEqual([]);
    await chat(1);
    // Offline: it waits even with chat and time.
    live = false;
    expect(await tick()).toEqual([]);
    live = true;
    expect(await tick()).toEqual(['twitch:timers/socials']);
    expect(sent).toHaveLength(2);
    // Straight after a run nothing is due.
    await chat(10);
    expect(await tick()).toEqual([]);
  });

  it('posts a timer once when two runners tick at the same moment', async () => {
    const channel = 'twitch:timers-race';
    let clock = Date.parse('2031-01-01T00:00:00Z');
    const sent: string[] = [];
    await saveTimer(store, channel, { name: 'once', message: 'hello', intervalMin: 1, minLines: 0 });
    const options = {
      store,
      now: () => clock,
      isLive: async () => true,
      send: async (_channel: string, text: string) => void sent.push(text),
      logger: { warn: () => undefined },
    };
    const a = createTimerRunner(options);
    const b = createTimerRunner(options);
    clock += 2 * 60_000;
    const results = await Promise.all([a.tick(), b.tick()]);
    expect(results.flat().filter((name) => name.startsWith(channel))).toEqual(['twitch:timers-race/once']);
    expect(sent.filter((text) => text === 'hello')).toHaveLength(1);
  });
});
