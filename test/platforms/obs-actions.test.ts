/** The OBS action vocabulary, the overlay's alert mapping and `!scene`'s decision (pure; no sockets). */
import { describe, expect, it } from 'vitest';
import { createEnvelope, createStep, type Envelope } from '../../src/core/index.js';
import {
  normalizeObsEvent,
  obsActionAnnotation,
  obsResultAnnotation,
  pendingActions,
  performObsAction,
  type ObsRequester,
} from '../../src/platforms/obs/index.js';
import { buildEventSubEnvelope } from '../../src/platforms/twitch/eventsub.js';
import { alertFromEnvelope } from '../../src/services/api-gateway/overlay.js';
import { sceneCommand } from '../../src/services/commands/scene.js';
import { EVENTSUB_BROADCASTER, EVENTSUB_EVENTS } from '../support/eventsub-events.js';

const chat = (role: string): Envelope =>
  createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '1' },
    user: { id: '9', name: 'someone', displayName: 'Someone', profileImageUrl: '', role },
    routingSlip: [createStep('query-analyzer', { status: 'OK' }), createStep('router', { status: 'OK' }), createStep('commands')],
  });

const eventsub = (kind: string, event: Record<string, unknown>) =>
  buildEventSubEnvelope({
    messageId: `m-${kind}`,
    kind,
    version: '1',
    event,
    receivedAt: new Date(),
    broadcaster: { id: EVENTSUB_BROADCASTER.id, login: EVENTSUB_BROADCASTER.login },
  });

describe('OBS actions in an envelope', () => {
  it('lists the obs.action annotations that have no obs.result yet, and says why an invalid one is invalid', () => {
    const first = obsActionAnnotation('test', { action: 'switchScene', scene: 'BRB' }, { reply: true });
    const second = obsActionAnnotation('test', { action: 'setText', source: 'Title', text: 'hi' });
    const envelope = createEnvelope({ type: 't', source: { platform: 'obs', channel: 'studio', channelId: '' } });
    envelope.annotations = [
      first,
      second,
      { id: 'bad', kind: 'obs.action', source: 'rule', createdAt: new Date().toISOString(), payload: { action: 'showSource' } },
      obsResultAnnotation('obs', String(second.payload!.actionId), { ok: true, message: 'done' }),
    ];
    const pending = pendingActions(envelope);
    expect(pending).toHaveLength(2);
    expect(pending[0]).toEqual({ actionId: first.payload!.actionId, reply: true, action: { action: 'switchScene', scene: 'BRB' } });
    expect(pending[1]).toMatchObject({ actionId: 'bad', reply: false });
    expect('invalid' in pending[1]! && pending[1].invalid).toContain('source');
  });

  it('turns an OBS event into an obs.event.v1 envelope with the event type as externalEvent.kind', () => {
    const envelope = normalizeObsEvent('StreamStateChanged', { outputActive: true }, { egressDestination: 'internal.egress.x.v1' });
    expect(envelope).toMatchObject({
      type: 'obs.event.v1',
      source: { platform: 'obs', channel: 'studio', egressDestination: 'internal.egress.x.v1' },
      externalEvent: { kind: 'StreamStateChanged', source: 'obs', payload: { outputActive: true } },
    });
  });

  it('reports a request while OBS is not connected as NOT_CONNECTED instead of throwing', async () => {
    const requester: ObsRequester = {
      call: async () => {
        throw Object.assign(new Error('OBS is not connected (connecting)'), { code: 'NOT_CONNECTED' });
      },
      programScene: () => undefined,
    };
    expect(await performObsAction(requester, { action: 'startRecording' })).toEqual({
      ok: false,
      code: 'NOT_CONNECTED',
      message: 'OBS is not connected (connecting)',
    });
  });
});

describe('alerts for the overlay', () => {
  it('maps follows, subs, gifts, cheers and raids to alerts with the names and numbers the templates use', () => {
    const alertFor = (kind: string) => alertFromEnvelope(eventsub(kind, EVENTSUB_EVENTS[kind]!));
    expect(alertFor('channel.follow')).toMatchObject({ kind: 'follow', name: 'Fan_One' });
    expect(alertFor('channel.subscribe')).toMatchObject({ kind: 'sub', name: 'Subber', tier: 2 });
    expect(alertFor('channel.subscription.gift')).toMatchObject({ kind: 'gift', name: 'Anonymous', count: 5, tier: 1 });
    expect(alertFor('channel.cheer')).toMatchObject({ kind: 'cheer', name: 'Cheerer', bits: 100, message: 'Cheer100 great run' });
    expect(alertFor('channel.raid')).toMatchObject({ kind: 'raid', name: 'Raider', viewers: 37 });
  });

  it('shows no alert for a gifted sub (its gift event already does), a channel update or a chat message', () => {
    expect(alertFromEnvelope(eventsub('channel.subscribe', { ...EVENTSUB_EVENTS['channel.subscribe'], is_gift: true }))).toBeUndefined();
    expect(alertFromEnvelope(eventsub('channel.update', EVENTSUB_EVENTS['channel.update']!))).toBeUndefined();
    expect(alertFromEnvelope(chat('viewer'))).toBeUndefined();
  });
});

describe('!scene', () => {
  it('refuses a viewer, a subscriber and a VIP without touching the slip', () => {
    for (const role of ['viewer', 'subscriber', 'vip', '']) {
      const outcome = sceneCommand(chat(role), ['BRB'], { prefix: '!', stepIndex: 2, source: 'commands' });
      expect(outcome).toEqual({ kind: 'refuse', message: '@Someone only moderators can switch scenes.' });
    }
  });

  it('gives a moderator the usage when no scene is named', () => {
    expect(sceneCommand(chat('moderator'), [], { prefix: '!', stepIndex: 2, source: 'commands' })).toEqual({
      kind: 'reply',
      message: '@Someone usage: !scene <scene name>',
    });
  });

  it('puts the obs step right after the commands step and a switchScene action that asks for a reply', () => {
    const outcome = sceneCommand(chat('broadcaster'), ['Just', 'Chatting'], { prefix: '!', stepIndex: 2, source: 'commands' });
    if (outcome.kind !== 'act') throw new Error(`expected act, got ${outcome.kind}`);
    expect(outcome.envelope.routingSlip.map((step) => step.id)).toEqual(['query-analyzer', 'router', 'commands', 'obs']);
    expect(pendingActions(outcome.envelope)).toEqual([
      expect.objectContaining({ reply: true, action: { action: 'switchScene', scene: 'Just Chatting' } }),
    ]);
  });
});
