/**
 * Chat reactions end to end: an EventSub notification from the fake Twitch goes through ingress-egress,
 * auth, the router's reaction rules and the reactions service, and comes out as a PRIVMSG on the fake
 * IRC server, recorded by the finalizer. Real Twurple clients, memory bus, PGlite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadArchitecture } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import { service as eventRouter } from '../../src/services/event-router/index.js';
import finalizer from '../../src/services/finalizer/index.js';
import ingressEgress from '../../src/services/ingress-egress/index.js';
import persistence from '../../src/services/persistence/index.js';
import reactions, { updateReaction } from '../../src/services/reactions/index.js';
import type { EventRecord, Store } from '../../src/store/index.js';
import { useStoreAndServices } from '../support/service-test.js';
import { BOT, OTHER, STREAMER, startTwitchWorld, type TwitchWorld } from '../support/twitch-world.js';
import { waitFor } from '../support/wait.js';

const b = { broadcaster_user_id: STREAMER.id, broadcaster_user_login: STREAMER.login, broadcaster_user_name: STREAMER.displayName };
let seq = 0;
const fan = () => {
  seq += 1;
  return { user_id: `20${seq}`, user_login: `fan_${seq}`, user_name: `Fan_${seq}` };
};

let store: Store;
let world: TwitchWorld;

beforeAll(async () => {
  world = await startTwitchWorld();
  world.api.setStream(STREAMER.id, { title: 'Speedrun', gameName: 'Celeste', viewerCount: 12 });
});
afterAll(async () => {
  await world?.stop();
});
useStoreAndServices({
  host: () => ({
    services: [ingressEgress, authService, eventRouter, reactions, persistence, finalizer],
    env: {
      ...world.env(world.broadcasterEnv()),
      INSTANCE_ID: 'reactions-e2e',
      BOT_NAME: BOT.login,
      RULES_RELOAD_MS: '100',
      REACTIONS_FOLLOW_WINDOW_MS: '0',
    },
    architecture: loadArchitecture(),
  }),
  started: async (running) => {
    store = running.store;
    await world.api.waitFor(() => world.api.activeSubscriptions().length === 10, 20_000, 'all subscriptions of the broadcaster');
    await world.irc.waitFor(() => world.irc.joinedClients(STREAMER.login) > 0, 15_000);
  },
});

/** Sends a notification and waits for its final record. */
async function notify(type: string, version: string, event: Record<string, unknown>): Promise<EventRecord> {
  const [messageId] = world.api.notify(type, version, event);
  return await waitFor(
    async () => {
      const page = await store.listEvents({ type: 'twitch.eventsub.v1', limit: 200 });
      const match = page.items.find((item) => item.final?.externalEvent?.id === messageId);
      return match?.outcome ? match : undefined;
    },
    { timeoutMs: 50_000, message: `the final record of ${type} ${messageId}` },
  );
}

const privmsgContaining = (text: string) =>
  world.irc.waitFor(() => world.irc.messagesTo(STREAMER.login).find((message) => message.text.includes(text)), 15_000);

describe('default chat reactions, from EventSub to a PRIVMSG', () => {
  it('thanks a follower', async () => {
    const user = fan();
    const record = await notify('channel.follow', '2', { ...user, ...b, followed_at: new Date().toISOString() });
    await privmsgContaining(`Thanks for the follow, ${user.user_name}!`);
    expect(record.final!.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual(['reactions:OK']);
    expect(record.replyDelivered).toBe(true);
  });

  it('thanks a new subscriber', async () => {
    const user = fan();
    await notify('channel.subscribe', '1', { ...user, ...b, tier: '1000', is_gift: false });
    await privmsgContaining(`Thank you for subscribing, ${user.user_name}!`);
  });

  it('thanks a resubscriber with the months and their message', async () => {
    const user = fan();
    await notify('channel.subscription.message', '1', {
      ...user,
      ...b,
      tier: '1000',
      message: { text: 'still here!', emotes: [] },
      cumulative_months: 14,
      streak_months: 3,
      duration_months: 1,
    });
    await privmsgContaining(`${user.user_name} resubscribed for 14 months! still here!`);
  });

  it('thanks a cheerer for the bits', async () => {
    const user = fan();
    await notify('channel.cheer', '1', { ...user, ...b, is_anonymous: false, bits: 250, message: 'Cheer250 gg' });
    await privmsgContaining(`Thanks for the 250 bits, ${user.user_name}!`);
  });

  it('welcomes a raid with the viewer count', async () => {
    await notify('channel.raid', '1', {
      from_broadcaster_user_id: OTHER.id,
      from_broadcaster_user_login: OTHER.login,
      from_broadcaster_user_name: OTHER.displayName,
      to_broadcaster_user_id: STREAMER.id,
      to_broadcaster_user_login: STREAMER.login,
      to_broadcaster_user_name: STREAMER.displayName,
      viewers: 42,
    });
    await privmsgContaining(`${OTHER.displayName} is raiding with 42 viewers!`);
    // The shoutout is off by default.
    expect(world.api.shoutouts).toHaveLength(0);
  });

  it('thanks a gift bomb of 50 subs with one message, not 50', async () => {
    const gifter = fan();
    const before = world.irc.messagesTo(STREAMER.login).length;
    const gift = notify('channel.subscription.gift', '1', {
      ...gifter,
      ...b,
      total: 50,
      tier: '1000',
      cumulative_total: 120,
      is_anonymous: false,
    });
    const subs = Array.from({ length: 50 }, () => notify('channel.subscribe', '1', { ...fan(), ...b, tier: '1000', is_gift: true }));
    const records = await Promise.all([gift, ...subs]);
    await privmsgContaining(`Thank you ${gifter.user_name} for gifting 50 subs!`);
    expect(records.slice(1).every((record) => record.replyDelivered === false && record.outcome === 'completed')).toBe(true);
    expect(
      world.irc
        .messagesTo(STREAMER.login)
        .slice(before)
        .map((message) => message.text),
    ).toEqual([`Thank you ${gifter.user_name} for gifting 50 subs!`]);
  }, 120_000);
});

describe('changing reactions', () => {
  it('uses a reworded template and stays silent for a reaction switched off', async () => {
    // Follow first, cheer second: the router reloads the whole rule table at once every RULES_RELOAD_MS,
    // so once a cheer shows the new wording the reload that brought it also holds the follow switched off.
    // (The other order let a reload land between the two writes, and the follow still got its thanks.)
    await updateReaction(store, 'follow', { enabled: false });
    await updateReaction(store, 'cheer', { template: '{bits} bits from {user}, wow! {message}' });
    const user = fan();
    await waitFor(
      async () => {
        await notify('channel.cheer', '1', { ...user, ...b, is_anonymous: false, bits: 5, message: 'hi' });
        return world.irc.messagesTo(STREAMER.login).some((message) => message.text === `5 bits from ${user.user_name}, wow! hi`);
      },
      { timeoutMs: 15_000, message: 'the reworded cheer' },
    );
    const follower = fan();
    const before = world.irc.messagesTo(STREAMER.login).length;
    const record = await notify('channel.follow', '2', { ...follower, ...b, followed_at: new Date().toISOString() });
    expect(record.final!.routingSlip).toEqual([]);
    expect(record.replyDelivered).toBe(false);
    expect(
      world.irc
        .messagesTo(STREAMER.login)
        .slice(before)
        .some((message) => message.text.includes(follower.user_name)),
    ).toBe(false);
    await updateReaction(store, 'follow', { enabled: true });
  });

  it('shouts out a raider when the shoutout is on, within Twitch’s 2-minute limit', async () => {
    await updateReaction(store, 'raid', { shoutout: true });
    const raid = (from: { id: string; login: string; displayName: string }, viewers: number) =>
      notify('channel.raid', '1', {
        from_broadcaster_user_id: from.id,
        from_broadcaster_user_login: from.login,
        from_broadcaster_user_name: from.displayName,
        to_broadcaster_user_id: STREAMER.id,
        to_broadcaster_user_login: STREAMER.login,
        to_broadcaster_user_name: STREAMER.displayName,
        viewers,
      });
    const first = await waitFor(
      async () => {
        const record = await raid(OTHER, 7);
        return (record.final!.annotations ?? []).some(
          (annotation) => annotation.kind === 'reaction-result' && annotation.label === 'shoutout-sent',
        )
          ? record
          : undefined;
      },
      { timeoutMs: 15_000, message: 'a raid with a shoutout' },
    );
    expect(first.replyDelivered).toBe(true);
    expect(world.api.shoutouts).toEqual([
      expect.objectContaining({ fromBroadcasterId: STREAMER.id, toBroadcasterId: OTHER.id, moderatorId: STREAMER.id }),
    ]);
    const second = await raid({ id: '1003', login: 'thirdchan', displayName: 'ThirdChan' }, 3);
    const skipped = (second.final!.annotations ?? []).find((annotation) => annotation.kind === 'reaction-result');
    expect(skipped).toMatchObject({ label: 'shoutout-skipped', payload: { reason: 'Twitch allows one shoutout every 2 minutes' } });
    expect(world.api.shoutouts).toHaveLength(1);
    expect(second.replyDelivered).toBe(true);
  });
});
