/**
 * `!scene <name>` and the documented raid rule through the real pipeline (auth → router → analyzer →
 * commands → obs step) with the OBS service connected to the fake obs-websocket server.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, Topic, type Envelope } from '../../src/core/index.js';
import { loadArchitecture } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import { createCommandsService } from '../../src/services/commands/index.js';
import { service as eventRouter } from '../../src/services/event-router/index.js';
import { DEFAULT_RULES_FILE, seedRules } from '../../src/services/event-router/load.js';
import { RuleSchema } from '../../src/services/event-router/rules.js';
import { buildEventSubEnvelope } from '../../src/platforms/twitch/eventsub.js';
import obsService from '../../src/services/obs/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { createModerationService } from '../../src/services/moderation/index.js';
import { startFakeObs, type FakeObs } from '../fakes/obs.js';
import { useStoreAndServices, type StoreAndServices } from '../support/service-test.js';
import { waitFor } from '../support/wait.js';

const encoder = new TextEncoder();
let counter = 0;

function chat(text: string, badges: string[]): Envelope {
  counter += 1;
  const login = `${badges[0] ?? 'viewer'}_${counter}`;
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '1000', egressDestination: Topic.egress },
    user: { id: String(5000 + counter), name: login, displayName: login, profileImageUrl: '', role: '' },
    payload: { text, messageId: `m-${counter}`, badges, isMod: badges.includes('moderator'), isSubscriber: false, emotes: [] },
  });
}

describe('!scene from chat', () => {
  let fake: FakeObs;
  let running: StoreAndServices;

  beforeAll(async () => {
    fake = await startFakeObs();
  });
  afterAll(async () => {
    await fake?.stop();
  });
  useStoreAndServices({
    // The shipped rules plus the raid example from config/examples (the one README documents).
    seed: async (store) => {
      await seedRules(store, DEFAULT_RULES_FILE);
      const example = RuleSchema.parse(
        JSON.parse(await readFile(new URL('../../config/examples/obs-raid-rule.json', import.meta.url), 'utf8')),
      );
      await store.upsertRule({
        id: example.id,
        priority: example.priority,
        enabled: example.enabled,
        logic: example.logic,
        action: example.action as Record<string, unknown>,
      });
    },
    host: () => ({
      services: [authService, eventRouter, createQueryAnalyzer(), createModerationService(), createCommandsService(), obsService],
      observe: [Topic.egress, Topic.finalizer, Topic.deadletter],
      architecture: loadArchitecture(),
      env: { INSTANCE_ID: 'scene-test', OBS_WEBSOCKET_URL: fake.url },
    }),
    started: async (started) => {
      running = started;
      await fake.waitFor(() => fake.identifiedSessions === 1 && fake.requestsOf('GetRecordStatus').length === 1);
      await waitFor(
        async () =>
          (await running.host.app.inject({ method: 'GET', url: '/_debug/obs' })).json().status === 'connected' ? true : undefined,
        { message: 'OBS connected' },
      );
    },
  });

  const say = async (text: string, badges: string[]): Promise<Envelope> => {
    const envelope = chat(text, badges);
    await running.bus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)));
    return (await running.observer.waitFor(Topic.egress, (value) => value.id === envelope.id)) as Envelope;
  };

  it('switches the scene for a moderator and tells chat, with the obs step in the slip', async () => {
    const out = await say('!scene BRB', ['moderator']);
    expect(fake.programScene).toBe('BRB');
    expect(out.candidates?.map((candidate) => candidate.text)).toEqual(['OBS: switched to scene "BRB".']);
    expect(out.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual([
      'query-analyzer:OK',
      'moderation:OK',
      'router:OK',
      'commands:OK',
      'obs:OK',
    ]);
    // OBS's own event about the switch comes back through the pipeline and is recorded.
    const event = (await running.observer.waitFor(
      Topic.finalizer,
      (value) =>
        value.type === 'obs.event.v1' &&
        value.externalEvent?.kind === 'CurrentProgramSceneChanged' &&
        value.externalEvent?.payload?.sceneName === 'BRB',
    )) as Envelope;
    expect(event.outcome).toBe('handled');
    expect(event.annotations?.find((annotation) => annotation.kind === 'route')?.label).toBe('obs-events-recorded');
  });

  it('switches the scene for the broadcaster, matching the name without regard to case', async () => {
    const out = await say('!scene ending', ['broadcaster']);
    expect(fake.programScene).toBe('Ending');
    expect(out.candidates?.[0]?.text).toBe('OBS: switched to scene "Ending".');
  });

  it("does nothing to OBS for a viewer's !scene", async () => {
    const before = fake.requests.length;
    const out = await say('!scene Main', []);
    expect(fake.programScene).toBe('Ending');
    expect(fake.requests.length).toBe(before);
    expect(out.routingSlip.map((step) => step.id)).not.toContain('obs');
    expect(out.candidates?.[0]?.text).toContain('only moderators can switch scenes');
  });

  it('answers an unknown scene with the list of scenes', async () => {
    const before = fake.requestsOf('SetCurrentProgramScene').length;
    const out = await say('!scene Starting Soon', ['moderator']);
    expect(out.candidates?.map((candidate) => candidate.text)).toEqual([
      'OBS: there is no scene "Starting Soon". Scenes: Main, BRB, Ending',
    ]);
    expect(fake.requestsOf('SetCurrentProgramScene').length).toBe(before);
    expect(fake.programScene).toBe('Ending');
  });

  it('shows the Raid source (inside its group) for the duration the example raid rule gives, then hides it', async () => {
    const raid = buildEventSubEnvelope({
      messageId: 'raid-1',
      kind: 'channel.raid',
      version: '1',
      event: {
        from_broadcaster_user_id: '3001',
        from_broadcaster_user_login: 'raider',
        from_broadcaster_user_name: 'Raider',
        to_broadcaster_user_id: '1000',
        to_broadcaster_user_login: 'streamer',
        to_broadcaster_user_name: 'Streamer',
        viewers: 12,
      },
      receivedAt: new Date(),
      broadcaster: { id: '1000', login: 'streamer' },
    });
    await say('!scene Main', ['moderator']);
    await waitFor(
      async () =>
        (await running.host.app.inject({ method: 'GET', url: '/_debug/obs' })).json().state.programScene === 'Main' ? true : undefined,
      { message: 'program scene Main' },
    );
    await running.bus.publish(Topic.ingress, encoder.encode(JSON.stringify(raid)));
    const final = (await running.observer.waitFor(Topic.finalizer, (value) => value.id === raid.id)) as Envelope;
    expect(final.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual(['obs:OK']);
    expect(final.annotations?.find((annotation) => annotation.kind === 'obs.result')).toMatchObject({
      value: true,
      payload: { message: 'showed "Raid" in "Alerts"' },
    });
    const shown = fake
      .requestsOf('SetSceneItemEnabled')
      .find((request) => request.requestData.sceneItemId === 3 && request.requestData.sceneItemEnabled === true);
    expect(shown?.requestData.sceneName).toBe('Alerts');
    // Hidden again after 10 s (the rule's durationMs); waited for as a request, not a sleep.
    await fake.waitFor(
      () =>
        fake
          .requestsOf('SetSceneItemEnabled')
          .some((request) => request.requestData.sceneItemId === 3 && request.requestData.sceneItemEnabled === false),
      20_000,
    );
    expect(fake.findItem('Alerts', 'Raid')?.enabled).toBe(false);
  }, 30_000);
});
