/** Twitch EventSub notifications as Twitch sends them, for the tests that receive or map them. */

/** The streamer whose channel the events are about. */
export const EVENTSUB_BROADCASTER = { id: '1001', login: 'streamer', displayName: 'Streamer' };

const b = {
  broadcaster_user_id: EVENTSUB_BROADCASTER.id,
  broadcaster_user_login: EVENTSUB_BROADCASTER.login,
  broadcaster_user_name: EVENTSUB_BROADCASTER.displayName,
};

/** Realistic EventSub event bodies (Twitch reference payloads) for each kind BitBrat subscribes to. */
export const EVENTSUB_EVENTS: Record<string, Record<string, unknown>> = {
  'channel.follow': { user_id: '2001', user_login: 'fan_one', user_name: 'Fan_One', ...b, followed_at: '2025-11-21T17:02:00.123Z' },
  'channel.update': {
    ...b,
    title: 'Speedrunning Celeste',
    language: 'en',
    category_id: '504461',
    category_name: 'Celeste',
    content_classification_labels: ['ProfanityVulgarity'],
  },
  'stream.online': { id: '9001', ...b, type: 'live', started_at: '2025-11-21T17:00:00Z' },
  'stream.offline': { ...b },
  'channel.raid': {
    from_broadcaster_user_id: '3001',
    from_broadcaster_user_login: 'raider',
    from_broadcaster_user_name: 'Raider',
    to_broadcaster_user_id: EVENTSUB_BROADCASTER.id,
    to_broadcaster_user_login: EVENTSUB_BROADCASTER.login,
    to_broadcaster_user_name: EVENTSUB_BROADCASTER.displayName,
    viewers: 37,
  },
  'channel.subscribe': { user_id: '2002', user_login: 'subber', user_name: 'Subber', ...b, tier: '2000', is_gift: false },
  'channel.subscription.message': {
    user_id: '2005',
    user_login: 'resubber',
    user_name: 'Resubber',
    ...b,
    tier: '1000',
    message: { text: 'five months!', emotes: [] },
    cumulative_months: 5,
    streak_months: 3,
    duration_months: 1,
  },
  'channel.subscription.gift': {
    user_id: null,
    user_login: null,
    user_name: null,
    ...b,
    total: 5,
    tier: '1000',
    cumulative_total: null,
    is_anonymous: true,
  },
  'channel.cheer': {
    is_anonymous: false,
    user_id: '2003',
    user_login: 'cheerer',
    user_name: 'Cheerer',
    ...b,
    message: 'Cheer100 great run',
    bits: 100,
  },
  'channel.channel_points_custom_reward_redemption.add': {
    id: 'redemption-1',
    ...b,
    user_id: '2004',
    user_login: 'redeemer',
    user_name: 'Redeemer',
    user_input: 'play the boss music',
    status: 'unfulfilled',
    reward: { id: 'reward-1', title: 'Hydrate!', cost: 500, prompt: 'Make the streamer drink water' },
    redeemed_at: '2025-11-21T17:05:00Z',
  },
};
