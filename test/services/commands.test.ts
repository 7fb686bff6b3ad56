import { beforeAll, describe, expect, it } from 'vitest';
import { Topic, type Envelope } from '../../src/core/index.js';
import {
  createCommandsService,
  formatDuration,
  manageCommand,
  parseManageArgs,
  renderTemplate,
  streamInfo,
} from '../../src/services/commands/index.js';
import type { Store } from '../../src/store/index.js';
import { sayToCommands, type Chatter } from '../support/commands.js';
import { startOnMemoryBus, type MemoryBusHost } from '../support/harness.js';
import { releaseAfterAll, useEmbeddedStore } from '../support/service-test.js';

const viewer: Chatter = { id: 'v1', name: 'alice', role: 'viewer' };
const viewer2: Chatter = { id: 'v2', name: 'bob', role: 'viewer' };
const viewer3: Chatter = { id: 'v3', name: 'carl', role: 'viewer' };
const subscriber: Chatter = { id: 's1', name: 'sam', role: 'subscriber' };
const moderator: Chatter = { id: 'm1', name: 'mia', role: 'moderator' };

describe('command helpers (pure)', () => {
  it('formats durations', () => {
    expect(formatDuration(42_000)).toBe('42s');
    expect(formatDuration(5 * 60_000 + 10_000)).toBe('5m');
    expect(formatDuration((83 * 60 + 10) * 1000)).toBe('1h 23m');
    expect(formatDuration((26 * 3600 + 60) * 1000)).toBe('1d 2h 1m');
  });

  it('reads stream state from a sources document', () => {
    const now = Date.parse('2025-01-01T12:00:00Z');
    expect(
      streamInfo(
        {
          id: 'twitch:x',
          platform: 'twitch',
          streamStatus: 'online',
          metadata: { startedAt: '2025-01-01T10:37:00Z', title: 'T', game: 'G' },
        },
        now,
      ),
    ).toEqual({ online: true, uptime: '1h 23m', title: 'T', game: 'G' });
    expect(streamInfo({ id: 'twitch:x', platform: 'twitch', streamStatus: 'offline' }, now)).toEqual({ online: false, uptime: 'offline' });
    expect(streamInfo(undefined, now).uptime).toBe('offline');
  });

  it('renders every template variable and leaves unknown ones alone', () => {
    const text = renderTemplate('{user} {touser} {channel} [{args}] {count} {uptime} {game} {title} {nope}', {
      user: 'Alice',
      channel: 'streamer',
      args: ['@bob', 'x'],
      count: 7,
      stream: { online: true, uptime: '5m', game: 'Chess', title: 'Blitz' },
    });
    expect(text).toBe('Alice bob streamer [@bob x] 7 5m Chess Blitz {nope}');
  });

  it('does not let arguments turn a reply into a chat command', () => {
    expect(renderTemplate('{args}', { user: 'a', channel: 'c', args: ['/ban', 'streamer'] })).toBe('ban streamer');
    expect(renderTemplate('/me waves at {user}', { user: 'a', channel: 'c', args: [] })).toBe('/me waves at a');
  });

  it('parses management options between the name and the response', () => {
    expect(parseManageArgs(['!hype', '-cd=10', '-ucd=30', '-role=subscriber', '-alias=h,hh', "let's", 'go', '-cd=1'])).toEqual({
      input: {
        name: 'hype',
        cooldownSec: 10,
        userCooldownSec: 30,
        minRole: 'subscriber',
        aliases: ['h', 'hh'],
        response: "let's go -cd=1",
      },
    });
    expect(parseManageArgs(['!x', '-bogus=1', 'hi'])).toEqual({ error: expect.stringMatching(/unknown option -bogus/) });
    expect('error' in parseManageArgs([])).toBe(true);
  });
});

describe('the commands service', () => {
  let store: Store;
  let running: MemoryBusHost;

  useEmbeddedStore((opened) => (store = opened));
  beforeAll(async () => {
    running = await startOnMemoryBus({
      services: [createCommandsService()],
      observe: [Topic.egress, Topic.finalizer, Topic.deadletter],
      extra: { store },
    });
    const startedAt = new Date(Date.now() - (83 * 60 + 10) * 1000).toISOString();
    await store.mergeSource({
      id: 'twitch:streamer',
      platform: 'twitch',
      streamStatus: 'online',
      lastStreamUpdate: startedAt,
      metadata: { startedAt, title: 'Speedrun night', game: 'Celeste' },
    });
    await store.mergeSource({ id: 'twitch:quiet', platform: 'twitch', streamStatus: 'offline' });
  });
  releaseAfterAll(() => [running?.host, running?.bus]);

  /** Sends a chat line as the commands step and returns the reply (undefined when there is none). */
  async function say(
    text: string,
    who: Chatter = viewer,
    channel = 'streamer',
    platform = 'twitch',
  ): Promise<{ reply?: string; envelope: Envelope }> {
    const out = await sayToCommands(running.bus, running.observer, {
      text,
      who,
      displayName: who.name[0]!.toUpperCase() + who.name.slice(1),
      source: { platform, channel, channelId: '1' },
    });
    return { reply: out.candidates?.[0]?.text, envelope: out };
  }

  it('answers !ping with pong and sends it to egress', async () => {
    const { reply, envelope } = await say('!ping');
    expect(reply).toBe('pong');
    expect(envelope.routingSlip[0]?.status).toBe('OK');
    expect(running.observer.envelopes(Topic.egress).some((value) => value.id === envelope.id)).toBe(true);
  });

  it('answers !uptime from the stream state: live with the duration, or offline', async () => {
    expect((await say('!uptime')).reply).toBe('The stream has been live for 1h 23m.');
    expect((await say('!uptime', viewer, 'quiet')).reply).toBe('The stream is offline.');
    expect((await say('!uptime?', viewer, 'unknown-channel')).reply).toBe('The stream is offline.');
    // The api-gateway's test console has no source of its own: it sees the live stream.
    expect((await say('!uptime', viewer, 'console', 'api')).reply).toBe('The stream has been live for 1h 23m.');
  });

  it('skips unknown commands without a reply', async () => {
    const { reply, envelope } = await say('!doesnotexist');
    expect(reply).toBeUndefined();
    expect(envelope.routingSlip[0]?.status).toBe('SKIP');
    expect(envelope.outcome).toBe('completed');
  });

  it('fills templates, counts uses and resolves aliases', async () => {
    const added = await manageCommand(store, 'add', {
      name: '!so',
      response: 'Go follow {touser}! ({user} in {channel}, #{count}, {game}: {title}, up {uptime}) [{args}]',
      aliases: ['shoutout'],
      cooldownSec: 0,
    });
    expect(added.ok).toBe(true);
    expect((await say('!so @bob now')).reply).toBe('Go follow bob! (Alice in streamer, #1, Celeste: Speedrun night, up 1h 23m) [@bob now]');
    expect((await say('!shoutout carol')).reply).toMatch(/^Go follow carol! \(Alice in streamer, #2,/);
    expect((await store.getCommand('so'))?.uses).toBe(2);
  });

  it('lists the commands a user may use with !help and !commands', async () => {
    await manageCommand(store, 'add', { name: 'modsonly', response: 'secret', minRole: 'moderator' });
    await manageCommand(store, 'add', { name: 'off', response: 'x', enabled: false });
    const forViewer = (await say('!help')).reply!;
    expect(forViewer).toMatch(/^Commands: /);
    for (const name of ['!help', '!commands', '!ping', '!uptime', '!so']) expect(forViewer).toContain(name);
    for (const name of ['!addcom', '!modsonly', '!off']) expect(forViewer).not.toContain(name);
    const forMod = (await say('!commands', moderator)).reply!;
    for (const name of ['!addcom', '!editcom', '!delcom', '!modsonly']) expect(forMod).toContain(name);
  });

  it('gates custom commands by minimum role with a short reason', async () => {
    await manageCommand(store, 'add', { name: 'subonly', response: 'thanks for subbing {user}', minRole: 'subscriber', cooldownSec: 0 });
    expect((await say('!subonly', viewer2)).reply).toBe('@Bob !subonly is for subscribers only.');
    expect((await say('!subonly', subscriber)).reply).toBe('thanks for subbing Sam');
  });

  it('holds a per-command cooldown across users, and moderators are not held', async () => {
    await manageCommand(store, 'add', { name: 'cd', response: 'cooled {count}', cooldownSec: 60 });
    expect((await say('!cd', viewer)).reply).toBe('cooled 1');
    const blocked = await say('!cd', viewer2);
    expect(blocked.reply).toBeUndefined();
    expect(blocked.envelope.routingSlip[0]?.status).toBe('SKIP');
    expect((await say('!cd', moderator)).reply).toBe('cooled 2');
  });

  it('holds a per-user cooldown for that user only', async () => {
    await manageCommand(store, 'add', { name: 'ucd', response: 'hi {user}', cooldownSec: 0, userCooldownSec: 60 });
    expect((await say('!ucd', viewer)).reply).toBe('hi Alice');
    expect((await say('!ucd', viewer)).reply).toBeUndefined();
    expect((await say('!ucd', viewer2)).reply).toBe('hi Bob');
  });

  it('lets a moderator add, edit and delete commands from chat', async () => {
    expect((await say('!addcom !hype -cd=0 -alias=h Let us go {user}!', moderator)).reply).toBe('Command !hype added.');
    expect(await store.getCommand('hype')).toMatchObject({
      response: 'Let us go {user}!',
      aliases: ['h'],
      cooldownSec: 0,
      createdBy: 'mia',
    });
    expect((await say('!h')).reply).toBe('Let us go Alice!');
    expect((await say('!editcom !hype -role=subscriber HYPE {user}', moderator)).reply).toBe('Command !hype updated.');
    expect((await say('!hype', subscriber)).reply).toBe('HYPE Sam');
    expect((await say('!addcom !hype again', moderator)).reply).toBe('@Mia !hype already exists (use edit)');
    expect((await say('!delcom !h', moderator)).reply).toBe('Command !hype deleted.');
    expect(await store.getCommand('hype')).toBeUndefined();
    expect((await say('!hype', subscriber)).reply).toBeUndefined();
  });

  it('refuses command management to a viewer with a short reason and changes nothing', async () => {
    const { reply } = await say('!addcom !free money', viewer3);
    expect(reply).toBe('@Carl only moderators can manage commands.');
    expect(await store.getCommand('free')).toBeUndefined();
    await manageCommand(store, 'add', { name: 'keep', response: 'kept' });
    // A second refusal right after is silent, so refusals cannot be used to flood chat.
    expect((await say('!delcom !keep', viewer3)).reply).toBeUndefined();
    expect(await store.getCommand('keep')).toBeDefined();
  });
});

describe('manageCommand (the CLI entry point)', () => {
  let store: Store;
  useEmbeddedStore((opened) => (store = opened));

  it('adds with defaults, lists, edits only what is given, and deletes', async () => {
    const added = await manageCommand(store, 'add', { name: '!Discord', response: 'join us at discord.gg/x' });
    expect(added).toMatchObject({
      ok: true,
      command: { name: 'discord', aliases: [], minRole: 'viewer', cooldownSec: 5, userCooldownSec: 0, enabled: true },
    });
    const edited = await manageCommand(store, 'edit', { name: 'discord', userCooldownSec: 30 });
    expect(edited).toMatchObject({ ok: true, command: { response: 'join us at discord.gg/x', userCooldownSec: 30 } });
    const list = await manageCommand(store, 'list');
    expect(list.ok && list.commands?.map((command) => command.name)).toEqual(['discord']);
    expect(await manageCommand(store, 'delete', { name: 'discord' })).toMatchObject({ ok: true });
    expect(await manageCommand(store, 'delete', { name: 'discord' })).toMatchObject({ ok: false, code: 'NOT_FOUND' });
  });

  it('rejects built-in names, bad roles, bad cooldowns, taken aliases and empty edits', async () => {
    await manageCommand(store, 'add', { name: 'one', response: '1', aliases: ['uno'] });
    expect(await manageCommand(store, 'add', { name: 'ping', response: 'x' })).toMatchObject({
      ok: false,
      message: expect.stringMatching(/built-in/),
    });
    expect(await manageCommand(store, 'add', { name: 'two', response: 'x', minRole: 'overlord' })).toMatchObject({
      ok: false,
      message: expect.stringMatching(/unknown role/),
    });
    expect(await manageCommand(store, 'add', { name: 'two', response: 'x', cooldownSec: -1 })).toMatchObject({ ok: false });
    expect(await manageCommand(store, 'add', { name: 'two', response: 'x', aliases: ['uno'] })).toMatchObject({
      ok: false,
      message: expect.stringMatching(/already used by !one/),
    });
    expect(await manageCommand(store, 'add', { name: 'uno', response: 'x' })).toMatchObject({
      ok: false,
      message: expect.stringMatching(/alias of !one/),
    });
    expect(await manageCommand(store, 'add', { name: 'bad name', response: 'x' })).toMatchObject({ ok: false });
    expect(await manageCommand(store, 'edit', { name: 'one' })).toMatchObject({
      ok: false,
      message: expect.stringMatching(/nothing to change/),
    });
    expect(await store.getCommand('two')).toBeUndefined();
  });
});
