/** The Helix moderation gateway against the fake Twitch (real Twurple): which account acts, and refusals as values. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTwitchModeration } from '../../src/platforms/twitch/moderation.js';
import { createStore, type Store } from '../../src/store/index.js';
import { BOT, OTHER, STREAMER, startTwitchWorld, type TwitchWorld } from '../support/twitch-world.js';

const logger = { warn: () => undefined };
let world: TwitchWorld;
let store: Store;

beforeAll(async () => {
  world = await startTwitchWorld({ botScopes: ['chat:read', 'chat:edit'] });
  world.api.addModerator(STREAMER.id, BOT.id);
  world.api.setChannel(OTHER.id, { gameName: 'Chess' });
  store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  await store.init();
});
afterAll(async () => {
  await store?.close();
  await world?.stop();
});

describe('the Helix moderation gateway', () => {
  it('records a bot token without the moderation scopes as not permitted and calls nothing', async () => {
    await store.putToken({
      id: 'twitch:bot',
      accessToken: world.bot.accessToken,
      refreshToken: world.bot.refreshToken,
      scopes: [],
      obtainedAt: new Date().toISOString(),
    });
    const gateway = createTwitchModeration({ clientId: world.api.clientId, clientSecret: world.api.clientSecret, store, logger });
    const before = world.api.requests.filter((request) => request.path.startsWith('/mock/moderation')).length;
    expect(await gateway.deleteMessage({ id: STREAMER.id, login: STREAMER.login }, 'msg-1')).toEqual({
      status: 'not-permitted',
      error: expect.stringMatching(/moderator:manage:chat_messages/),
    });
    expect(await gateway.timeout({ id: STREAMER.id, login: STREAMER.login }, { id: '77', login: 'x' }, 10, 'r')).toEqual({
      status: 'not-permitted',
      error: expect.stringMatching(/moderator:manage:banned_users/),
    });
    expect(world.api.requests.filter((request) => request.path.startsWith('/mock/moderation')).length).toBe(before);
  });

  it('acts as the broadcaster in their own channel when the bot cannot, and looks channels up', async () => {
    const owner = world.api.issueToken(STREAMER.id, { scopes: ['moderator:manage:banned_users', 'moderator:manage:chat_messages'] });
    await store.putToken({
      id: 'twitch:broadcaster',
      accessToken: owner.accessToken,
      refreshToken: owner.refreshToken,
      scopes: [],
      obtainedAt: new Date().toISOString(),
    });
    const gateway = createTwitchModeration({ clientId: world.api.clientId, clientSecret: world.api.clientSecret, store, logger });
    expect(await gateway.ban({ id: STREAMER.id, login: STREAMER.login }, { id: '88', login: 'troll' }, 'spam')).toEqual({ status: 'done' });
    expect(
      world.api.requests.filter((request) => request.method === 'POST' && request.path === '/mock/moderation/bans').at(-1),
    ).toMatchObject({
      query: { broadcaster_id: STREAMER.id, moderator_id: STREAMER.id },
      body: { data: { user_id: '88', reason: 'spam' } },
      status: 200,
    });
    expect(await gateway.ban({ id: STREAMER.id, login: STREAMER.login }, { id: '88', login: 'troll' }, 'again')).toEqual({
      status: 'failed',
      error: expect.stringMatching(/already banned/),
    });
    expect(await gateway.unban({ id: STREAMER.id, login: STREAMER.login }, { id: '88', login: 'troll' })).toEqual({ status: 'done' });
    expect(await gateway.lookupChannel(OTHER.login)).toEqual({
      id: OTHER.id,
      login: OTHER.login,
      displayName: OTHER.displayName,
      gameName: 'Chess',
    });
    expect(await gateway.lookupChannel('nobody_here')).toBeUndefined();
  });

  it('says what to set without Twitch app credentials', async () => {
    const gateway = createTwitchModeration({ store, logger });
    expect(await gateway.deleteMessage({ id: STREAMER.id, login: STREAMER.login }, 'm')).toEqual({
      status: 'not-permitted',
      error: expect.stringMatching(/TWITCH_CLIENT_ID/),
    });
  });
});
