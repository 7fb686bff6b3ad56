/** The LLM's OBS tools on the built-in platform MCP server: offered to and usable by moderators and up only. */
import { describe, expect, it } from 'vitest';
import { obsResultAnnotation, pendingActions, type ObsActionResult } from '../../src/platforms/obs/index.js';
import type { Requester } from '../../src/services/llm-bot/index.js';
import { OBS_TOOL_POLICIES } from '../../src/services/llm-bot/mcp-obs.js';
import { answerNextRequest, expectModeratorTools, requesterAs, resultText, usePlatformMcp } from '../support/platform-mcp.js';

const person = (role: string): Requester => requesterAs(role, { channel: 'streamer' });

describe('the OBS tools for the LLM', () => {
  const mcp = usePlatformMcp(
    async (store) => {
      await store.mergeSource({
        id: 'obs:studio',
        platform: 'obs',
        status: 'connected',
        metadata: { programScene: 'Main', streaming: true, recording: false, scenes: ['Main', 'BRB', 'Ending'] },
      });
    },
    // Nothing here performs the actions: a short wait for OBS's answer keeps the tests quick.
    { confirmWithinMs: 300 },
  );
  const { published, calls, call } = mcp;
  const body = (result: Awaited<ReturnType<typeof call>>) => JSON.parse(resultText(result));

  it('lists the four OBS tools, each declaring a moderator-and-up policy that viewers, subscribers and VIPs fail', async () => {
    await expectModeratorTools(mcp.platform, {
      prefix: 'obs_',
      names: ['obs_list_scenes', 'obs_set_text', 'obs_switch_scene', 'obs_toggle_source'],
      policies: OBS_TOOL_POLICIES,
      requester: person,
    });
  });

  it('refuses a viewer and a call without a requester, and asks OBS for nothing', async () => {
    calls.length = 0;
    const asViewer = await call('obs_switch_scene', { scene: 'BRB' }, person('viewer'));
    expect(asViewer.isError).toBe(true);
    expect(resultText(asViewer)).toBe('forbidden: obs_switch_scene is not available to role viewer');
    const anonymous = await call('obs_set_text', { source: 'Now Playing', text: 'hacked' });
    expect(anonymous.isError).toBe(true);
    const listing = await call('obs_list_scenes', {}, person('subscriber'));
    expect(listing.isError).toBe(true);
    expect(calls).toEqual(['obs_switch_scene:denied', 'obs_set_text:denied', 'obs_list_scenes:denied']);
    expect(published).toEqual([]);
  });

  it('gives a moderator the scenes and the live scene', async () => {
    const result = await call('obs_list_scenes', {}, person('moderator'));
    expect(result.isError).toBeFalsy();
    expect(body(result)).toEqual({ connected: true, programScene: 'Main', scenes: ['Main', 'BRB', 'Ending'] });
  });

  it("turns a moderator's switch, toggle and text into obs.action envelopes on the obs step", async () => {
    published.length = 0;
    expect((await call('obs_switch_scene', { scene: 'brb' }, person('moderator'))).isError).toBeFalsy();
    expect((await call('obs_toggle_source', { source: 'Raid', visible: true }, person('broadcaster'))).isError).toBeFalsy();
    expect((await call('obs_toggle_source', { source: 'Webcam', scene: 'Main' }, person('moderator'))).isError).toBeFalsy();
    expect((await call('obs_set_text', { source: 'Now Playing', text: 'Chill beats' }, person('moderator'))).isError).toBeFalsy();
    expect(published.map((item) => item.topic)).toEqual(['internal.obs.v1', 'internal.obs.v1', 'internal.obs.v1', 'internal.obs.v1']);
    const actions = published.map((item) => pendingActions(item.envelope)[0]);
    expect(actions.map((item) => (item && 'action' in item ? item.action : item))).toEqual([
      { action: 'switchScene', scene: 'BRB' },
      { action: 'showSource', source: 'Raid' },
      { action: 'toggleSource', source: 'Webcam', scene: 'Main' },
      { action: 'setText', source: 'Now Playing', text: 'Chill beats' },
    ]);
    expect(published[0]!.envelope.routingSlip).toMatchObject([{ id: 'obs', status: 'PENDING', destination: 'internal.obs.v1' }]);
    expect(published[0]!.envelope.user).toMatchObject({ role: 'moderator', name: 'moderator_login' });
  });

  it('refuses an unknown scene with the list of scenes instead of asking OBS', async () => {
    published.length = 0;
    const result = await call('obs_switch_scene', { scene: 'Nope' }, person('moderator'));
    expect(result.isError).toBe(true);
    expect(body(result)).toEqual({ ok: false, reason: 'there is no scene "Nope"', scenes: ['Main', 'BRB', 'Ending'] });
    expect(published).toEqual([]);
  });

  /** Answers the next OBS request as the obs service would, with `result`. */
  const answerWith = (result: ObsActionResult) =>
    answerNextRequest(mcp, (envelope) =>
      obsResultAnnotation('obs', envelope.annotations!.find((annotation) => annotation.kind === 'obs.action')!.id, result),
    );

  it('tells the model what OBS answered: done, or refused with OBS’s reason', async () => {
    published.length = 0;
    const [done] = await Promise.all([
      call('obs_switch_scene', { scene: 'Ending' }, person('moderator')),
      answerWith({ ok: true, message: 'switched to Ending' }),
    ]);
    expect(done.isError).toBeFalsy();
    expect(body(done)).toEqual({ ok: true, done: { action: 'switchScene', scene: 'Ending' } });

    published.length = 0;
    const [refused] = await Promise.all([
      call('obs_toggle_source', { source: 'Nope', visible: false }, person('moderator')),
      answerWith({ ok: false, code: 'UNKNOWN_SOURCE', message: 'there is no source "Nope" in scene "Main"' }),
    ]);
    expect(refused.isError).toBe(true);
    expect(body(refused)).toEqual({
      ok: false,
      requested: { action: 'hideSource', source: 'Nope' },
      reason: 'there is no source "Nope" in scene "Main"',
    });
  });

  it('says the action was asked for when OBS has not answered within the wait', async () => {
    published.length = 0;
    const result = await call('obs_set_text', { source: 'Now Playing', text: 'Lo-fi' }, person('moderator'));
    expect(result.isError).toBeFalsy();
    expect(body(result)).toEqual({
      ok: true,
      requested: { action: 'setText', source: 'Now Playing', text: 'Lo-fi' },
      note: 'asked OBS; it has not answered yet',
    });
    expect(published).toHaveLength(1);
  });
});
