import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createEnvelope, isBitBratError } from '../../src/core/index.js';
import { streamStateOf } from '../../src/services/api-gateway/streams.js';
import { DEFAULT_RULES_FILE, compileRules, evaluationData, matchRule } from '../../src/services/event-router/index.js';
import {
  REACTIONS,
  applyReactionUpdate,
  defaultReactionRules,
  reactionFromRule,
  reactionRule,
  reactionVariables,
  renderReaction,
} from '../../src/services/reactions/reactions.js';

const eventsub = (kind: string, payload: Record<string, unknown>, user = { id: '7', name: 'fan', displayName: 'Fan' }) =>
  createEnvelope({
    type: 'twitch.eventsub.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '1001' },
    user: { ...user, profileImageUrl: '', role: '' },
    payload,
    extra: { externalEvent: { id: 'm1', source: 'twitch.eventsub', kind, version: '1', createdAt: new Date().toISOString(), payload } },
  });

describe('reaction rules', () => {
  it('ships the same reaction rules in config/rules.default.json as the reactions module defines', () => {
    const file = JSON.parse(readFileSync(DEFAULT_RULES_FILE, 'utf8')) as { rules: Array<Record<string, unknown>> };
    for (const rule of defaultReactionRules()) {
      const shipped = file.rules.find((candidate) => candidate.id === rule.id);
      expect(shipped).toEqual({
        id: rule.id,
        description: rule.description,
        priority: rule.priority,
        logic: rule.logic,
        action: rule.action,
      });
    }
  });

  it('routes each platform event kind to the reactions step with its reaction annotated, before the record-only rule', () => {
    const file = JSON.parse(readFileSync(DEFAULT_RULES_FILE, 'utf8')) as { rules: unknown[] };
    const rules = compileRules(file.rules);
    expect(rules.rejected).toEqual([]);
    for (const [name, definition] of Object.entries(REACTIONS)) {
      const match = matchRule(rules, evaluationData(eventsub(definition.kind, {}), 'ingress', 'bitbrat_bot'));
      expect(match?.rule.id).toBe(`reaction-${name}`);
      expect(match?.action).toMatchObject({ slip: ['reactions'], annotate: { kind: 'reaction', label: name } });
    }
    expect(matchRule(rules, evaluationData(eventsub('channel.update', {}), 'ingress', 'bitbrat_bot'))?.rule.id).toBe(
      'platform-events-recorded',
    );
  });

  it('reads a reaction back from its rule, with defaults when the rule is missing', () => {
    expect(reactionFromRule('raid', undefined)).toMatchObject({ enabled: true, template: REACTIONS.raid.template, shoutout: false });
    const rule = reactionRule('cheer', { enabled: false, template: '{bits}!' });
    expect(reactionFromRule('cheer', rule)).toMatchObject({
      enabled: false,
      template: '{bits}!',
      defaultTemplate: REACTIONS.cheer.template,
    });
  });
});

describe('changing a reaction', () => {
  const cheer = reactionFromRule('cheer', undefined);

  it('refuses a template with a variable the reaction does not have, naming the ones it has', () => {
    try {
      applyReactionUpdate(cheer, { template: 'Thanks {user} for {months} months' });
      expect.unreachable('the update should be refused');
    } catch (error) {
      expect(isBitBratError(error) && error.code).toBe('BAD_REQUEST');
      expect((error as Error).message).toBe(
        'invalid template: unknown variable {months}; cheer can use {user}, {bits}, {message}, {channel}',
      );
    }
  });

  it('refuses a shoutout setting on anything but the raid reaction', () => {
    expect(() => applyReactionUpdate(cheer, { shoutout: true })).toThrow(/only the raid reaction/);
  });

  it('restores the default wording with a null template', () => {
    const changed = applyReactionUpdate(cheer, { template: '{bits}!' });
    expect(applyReactionUpdate(changed, { template: null }).template).toBe(REACTIONS.cheer.template);
  });
});

describe('rendering a reaction', () => {
  it('fills the gift template with the gifter, the count and the right plural', () => {
    const five = reactionVariables('gift', eventsub('channel.subscription.gift', { total: 5, tierLevel: 1, isAnonymous: false }));
    expect(renderReaction(REACTIONS.gift.template, five)).toBe('Thank you Fan for gifting 5 subs!');
    const one = reactionVariables(
      'gift',
      eventsub(
        'channel.subscription.gift',
        { total: 1, isAnonymous: true },
        { id: 'anonymous', name: 'anonymous', displayName: 'Anonymous' },
      ),
    );
    expect(renderReaction(REACTIONS.gift.template, one)).toBe('Thank you an anonymous gifter for gifting 1 sub!');
  });

  it('fills channel counters ({count:name}) as commands and timers do, and leaves an unknown counter as written', () => {
    const updated = applyReactionUpdate(reactionFromRule('follow', undefined), {
      template: 'Welcome {user}! Deaths so far: {count:Deaths}, wins: {count:wins}',
    });
    const variables = reactionVariables('follow', eventsub('channel.follow', {}));
    expect(renderReaction(updated.template, variables, { deaths: 7 })).toBe('Welcome Fan! Deaths so far: 7, wins: {count:wins}');
  });

  it('names the raiding channel and its viewers', () => {
    const variables = reactionVariables(
      'raid',
      eventsub('channel.raid', { fromBroadcaster: { id: '3', login: 'raider', name: 'Raider' }, viewers: 37 }),
    );
    expect(renderReaction(REACTIONS.raid.template, variables)).toBe('Raider is raiding with 37 viewers! Welcome, raiders!');
  });

  it('leaves out an empty resub message without doubled spaces', () => {
    const variables = reactionVariables('resubscribe', eventsub('channel.subscription.message', { cumulativeMonths: 3, message: '' }));
    expect(renderReaction(REACTIONS.resubscribe.template, variables)).toBe('Fan resubscribed for 3 months!');
  });
});

describe('the stream state the API shows', () => {
  it('is the title, game, viewers and start of a live channel and nothing live of an offline one', () => {
    expect(
      streamStateOf({
        id: 'twitch:streamer',
        platform: 'twitch',
        streamStatus: 'online',
        viewerCount: 12,
        lastStreamUpdate: '2026-01-01T00:00:00.000Z',
        metadata: { title: 'T', game: 'G', startedAt: '2026-01-01T00:00:00.000Z' },
      }),
    ).toEqual({
      channel: 'streamer',
      sourceId: 'twitch:streamer',
      platform: 'twitch',
      status: 'online',
      title: 'T',
      game: 'G',
      viewerCount: 12,
      startedAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
    });
    expect(
      streamStateOf({
        id: 'twitch:streamer',
        platform: 'twitch',
        streamStatus: 'offline',
        viewerCount: null,
        metadata: { title: 'T', startedAt: null },
      }),
    ).toMatchObject({ status: 'offline', viewerCount: null, startedAt: null });
    expect(streamStateOf({ id: 'twitch:chat', platform: 'twitch', status: 'not_configured' })).toBeUndefined();
    expect(streamStateOf({ id: 'console', platform: 'api' })).toBeUndefined();
  });
});

describe('the reactions step', () => {
  const claims = new Map<string, number>();
  const ctx = {
    config: { REACTIONS_FOLLOW_WINDOW_MS: 10_000 },
    store: {
      async claimKey(namespace: string, key: string, ttlMs: number) {
        const id = `${namespace}:${key}`;
        if ((claims.get(id) ?? 0) > Date.now()) return false;
        claims.set(id, Date.now() + ttlMs);
        return true;
      },
    },
  };
  const routed = (kind: string, name: string, payload: Record<string, unknown>, user = { id: '7', name: 'fan', displayName: 'Fan' }) => ({
    ...eventsub(kind, payload, user),
    annotations: [
      {
        id: 'a1',
        kind: 'reaction',
        source: 'event-router',
        createdAt: new Date().toISOString(),
        label: name,
        payload: { template: REACTIONS[name as keyof typeof REACTIONS].template },
      },
    ],
  });

  it('thanks the first follow of a wave and records the rest without a message', async () => {
    const { service } = await import('../../src/services/reactions/index.js');
    const instance = await service.setup!(ctx as never);
    const consumer = instance.consumers['internal.reactions.v1'] as { handle: (envelope: unknown, handler: unknown) => Promise<any> };
    const first = await consumer.handle(routed('channel.follow', 'follow', {}), {});
    expect(first.envelope.candidates.map((candidate: any) => candidate.text)).toEqual(['Thanks for the follow, Fan! Welcome in.']);
    expect(first.envelope.source.egressDestination).toBe('internal.egress.v1');
    const second = await consumer.handle(routed('channel.follow', 'follow', {}, { id: '8', name: 'other', displayName: 'Other' }), {});
    expect(second.envelope.candidates ?? []).toEqual([]);
    expect(second.envelope.annotations.at(-1)).toMatchObject({ kind: 'reaction-result', label: 'suppressed' });
  });

  it('folds a gifted sub into its gift: no message of its own', async () => {
    const { service } = await import('../../src/services/reactions/index.js');
    const instance = await service.setup!(ctx as never);
    const consumer = instance.consumers['internal.reactions.v1'] as { handle: (envelope: unknown, handler: unknown) => Promise<any> };
    const gifted = await consumer.handle(routed('channel.subscribe', 'subscribe', { isGift: true }), {});
    expect(gifted.envelope.candidates ?? []).toEqual([]);
    expect(gifted.envelope.annotations.at(-1)).toMatchObject({ kind: 'reaction-result', label: 'batched', payload: { into: 'gift' } });
  });
});
