/** `bitbrat moderation` and `bitbrat toolkit` against a running api-gateway (loopback, port 0). */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { moderationCommand, toolkitCommand } from '../../src/cli/moderation.js';
import { service as gateway } from '../../src/services/api-gateway/index.js';
import { appendLog } from '../../src/services/moderation/index.js';
import type { Store } from '../../src/store/index.js';
import { useStoreAndServices } from '../support/service-test.js';

const MODERATOR = 'moderator-token-01';

let store: Store;
let base: string;

useStoreAndServices({
  host: () => ({
    services: [gateway],
    listen: true,
    env: { INSTANCE_ID: 'modcli', HOST: '127.0.0.1', API_GATEWAY_TOKENS: `${MODERATOR}:moderator` },
  }),
  started: (running) => {
    store = running.store;
    base = `http://127.0.0.1:${running.host.port}`;
  },
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs a command; returns its exit code, stdout and stderr. */
async function run(command: typeof moderationCommand, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((out += String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((err += String(chunk)), true));
  try {
    const code = await command([...args, '--url', base, '--token', MODERATOR], { STORE_DRIVER: 'pglite' });
    return { code, out, err };
  } finally {
    vi.restoreAllMocks();
  }
}

describe('bitbrat moderation and bitbrat toolkit through the API', () => {
  it('shows and changes a channel’s filters, and reports a bad change with the API’s message', async () => {
    const changed = await run(moderationCommand, ['filters', 'streamer', '--set', '{"links":{"allow":["youtube.com"]}}']);
    expect(changed.code).toBe(0);
    expect(JSON.parse(changed.out).links.allow).toEqual(['youtube.com']);
    expect(JSON.parse((await run(moderationCommand, ['filters', 'streamer'])).out).links.allow).toEqual(['youtube.com']);
    const bad = await run(moderationCommand, ['filters', 'streamer', '--set', '{"caps":{"ratio":9}}']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/the API answered 400: .*caps\.ratio/);
  });

  it('lists the log and asks for an undo', async () => {
    const entry = await appendLog(store, {
      channel: 'twitch:streamer',
      at: new Date().toISOString(),
      action: 'ban',
      status: 'done',
      user: { id: 'u9', login: 'troll' },
      by: 'bot',
      reason: 'term',
      undo: 'unban',
    });
    const log = await run(moderationCommand, ['log', '--channel', 'streamer', '--user', 'troll']);
    expect(JSON.parse(log.out).items.map((item: { id: string }) => item.id)).toEqual([entry.id]);
    const undo = await run(moderationCommand, ['undo', entry.id]);
    expect(undo.code).toBe(0);
    expect(JSON.parse(undo.out)).toMatchObject({ requested: true, logId: entry.id });
  });

  it('manages timers, counters, quotes and giveaways', async () => {
    expect(
      (await run(toolkitCommand, ['timers', 'streamer', 'set', 'socials', '--message', 'Follow us!', '--every', '20', '--lines', '4']))
        .code,
    ).toBe(0);
    expect(JSON.parse((await run(toolkitCommand, ['timers', 'streamer'])).out).items).toEqual([
      expect.objectContaining({ name: 'socials', intervalMin: 20, minLines: 4, enabled: true }),
    ]);
    expect(
      JSON.parse(
        (await run(toolkitCommand, ['counters', 'streamer', 'set', 'deaths', '--response', 'Deaths: {count}', '--value', '3'])).out,
      ),
    ).toEqual({ name: 'deaths', response: 'Deaths: {count}', value: 3 });
    expect(
      JSON.parse((await run(toolkitCommand, ['quotes', 'streamer', 'add', 'it', 'was', 'on', 'purpose', '--game', 'Celeste'])).out),
    ).toMatchObject({ number: 1, text: 'it was on purpose', game: 'Celeste' });
    expect(
      JSON.parse((await run(toolkitCommand, ['giveaway', 'streamer', 'start', '!join', '--seconds', '60', '--luck', '2'])).out),
    ).toMatchObject({ keyword: '!join', subscriberLuck: 2, status: 'open' });
    expect(JSON.parse((await run(toolkitCommand, ['giveaway', 'streamer', 'draw'])).out)).toMatchObject({
      entries: 0,
      giveaway: { status: 'drawn' },
    });
    expect((await run(toolkitCommand, ['timers', 'streamer', 'delete', 'socials'])).code).toBe(0);
    expect((await run(toolkitCommand, ['timers', 'streamer', 'delete', 'socials'])).code).toBe(1);
  });

  it('explains its usage for an unknown subcommand or a bad number', async () => {
    await expect(run(toolkitCommand, ['nonsense', 'streamer'])).rejects.toThrow(/bitbrat toolkit: use/);
    await expect(run(toolkitCommand, ['timers', 'streamer', 'set', 'x', '--every', 'soon'])).rejects.toThrow(
      /--every takes a whole number/,
    );
    await expect(run(moderationCommand, ['filters', 'streamer', '--set', 'not json'])).rejects.toThrow(/--set takes JSON/);
  });
});
