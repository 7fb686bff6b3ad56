/**
 * OBS tools for the LLM, registered on the built-in platform MCP server: list scenes, switch the scene,
 * show/hide a source, set a text source's text. Moderators and up only (each tool's policy in `_meta`,
 * re-checked on every call). The llm-bot may run in another process than the OBS connection, so the
 * tools read the studio from the `obs:studio` source and ask for changes by publishing an envelope that
 * carries an `obs.action` and the `obs` step (recorded by the finalizer like any other envelope); an action
 * tool then waits a moment for that record, to tell the model whether OBS did it and why not.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { createEnvelope, createStep, stepTopic } from '../../core/index.js';
import { OBS_SOURCE_ID, obsActionAnnotation, type ObsAction } from '../../platforms/obs/index.js';
import type { EventRecord, Store } from '../../store/types.js';
import { Role } from '../auth/roles.js';
import {
  awaitFinalRecord,
  createToolGuard,
  toolText as text,
  type Requester,
  type ToolGroupOptions,
  type ToolPolicy,
} from './mcp-platform.js';

/** Policies of the OBS tools: moderator and up. */
export const OBS_TOOL_POLICIES = {
  obs_list_scenes: { minRole: Role.moderator },
  obs_switch_scene: { minRole: Role.moderator },
  obs_toggle_source: { minRole: Role.moderator },
  obs_set_text: { minRole: Role.moderator },
} as const satisfies Record<string, ToolPolicy>;

export interface ObsToolOptions extends ToolGroupOptions {
  store: Pick<Store, 'getSource' | 'getEvent'>;
}

/** OBS's answer to one action in the finalized request (the obs service adds `<actionId>-result`). */
function obsAnswer(record: EventRecord, actionId: string): { ok: boolean; reason?: string } {
  const result = record.final?.annotations?.find((annotation) => annotation.id === `${actionId}-result`);
  if (!result) {
    const error = record.errors?.[0];
    return { ok: false, reason: error?.message ?? error?.code ?? `the request ended ${record.outcome} without an answer from OBS` };
  }
  const payload = (result.payload ?? {}) as { code?: string; message?: string };
  return { ok: result.value === true, reason: payload.message ?? payload.code };
}

/** The studio as the OBS service last reported it. */
async function studio(store: Pick<Store, 'getSource'>): Promise<{ connected: boolean; programScene?: string; scenes: string[] }> {
  const source = await store.getSource(OBS_SOURCE_ID);
  const metadata = (source?.metadata ?? {}) as { programScene?: unknown; scenes?: unknown };
  return {
    connected: source?.status === 'connected',
    ...(typeof metadata.programScene === 'string' ? { programScene: metadata.programScene } : {}),
    scenes: Array.isArray(metadata.scenes) ? metadata.scenes.map(String) : [],
  };
}

/** Adds the OBS tools to the platform server. */
export function registerObsTools(server: McpServer, options: ObsToolOptions): void {
  const { guarded, meta } = createToolGuard(OBS_TOOL_POLICIES, options.requesterFrom, options.onCall);

  /** Asks the OBS service to perform `action` for `requester`. */
  const request = async (action: ObsAction, requester: Requester): Promise<CallToolResult> => {
    if (!options.publish) return text({ ok: false, reason: 'OBS control is not available in this process' }, true);
    const state = await studio(options.store);
    if (!state.connected) return text({ ok: false, reason: 'OBS is not connected' }, true);
    const annotation = obsActionAnnotation('llm-bot', action);
    const envelope = createEnvelope({
      type: 'obs.action.request.v1',
      source: { platform: requester.platform, channel: requester.channel, channelId: requester.channelId },
      user: { id: requester.userId, name: requester.login, displayName: requester.login, profileImageUrl: '', role: requester.role },
      routingSlip: [createStep('obs')],
      extra: { annotations: [annotation] },
    });
    await options.publish(stepTopic('obs'), envelope);
    // Wait for OBS's answer, so the model says what happened rather than what it asked for.
    const record = await awaitFinalRecord(options.store, envelope.id, options.confirmWithinMs);
    if (!record) return text({ ok: true, requested: action, note: 'asked OBS; it has not answered yet' });
    const answer = obsAnswer(record, annotation.id);
    return answer.ok
      ? text({ ok: true, done: action })
      : text({ ok: false, requested: action, reason: answer.reason ?? 'OBS did not do it' }, true);
  };

  server.registerTool(
    'obs_list_scenes',
    {
      description: 'OBS: the scenes and which one is live on stream.',
      inputSchema: {},
      annotations: { readOnlyHint: true },
      _meta: meta('obs_list_scenes'),
    },
    guarded<Record<string, never>>('obs_list_scenes', async () => text(await studio(options.store))),
  );

  server.registerTool(
    'obs_switch_scene',
    {
      description: 'OBS: switch the live (program) scene.',
      inputSchema: { scene: z.string().min(1).max(200).describe('Scene name, as obs_list_scenes gives it') },
      _meta: meta('obs_switch_scene'),
    },
    guarded<{ scene: string }>('obs_switch_scene', async ({ scene }, requester) => {
      const state = await studio(options.store);
      const match = state.scenes.find((name) => name.toLowerCase() === scene.toLowerCase());
      if (state.scenes.length > 0 && !match) return text({ ok: false, reason: `there is no scene "${scene}"`, scenes: state.scenes }, true);
      return request({ action: 'switchScene', scene: match ?? scene }, requester);
    }),
  );

  server.registerTool(
    'obs_toggle_source',
    {
      description: 'OBS: show or hide a source (also inside groups) in a scene; without `visible` it flips it.',
      inputSchema: {
        source: z.string().min(1).max(200).describe('Source name'),
        scene: z.string().min(1).max(200).optional().describe('Scene name; default the live scene'),
        visible: z.boolean().optional().describe('true shows, false hides; omit to toggle'),
      },
      _meta: meta('obs_toggle_source'),
    },
    guarded<{ source: string; scene?: string; visible?: boolean }>('obs_toggle_source', async ({ source, scene, visible }, requester) =>
      request(
        { action: visible === undefined ? 'toggleSource' : visible ? 'showSource' : 'hideSource', source, ...(scene ? { scene } : {}) },
        requester,
      ),
    ),
  );

  server.registerTool(
    'obs_set_text',
    {
      description: "OBS: set a text source's text.",
      inputSchema: { source: z.string().min(1).max(200).describe('Text source name'), text: z.string().max(500).describe('The new text') },
      _meta: meta('obs_set_text'),
    },
    guarded<{ source: string; text: string }>('obs_set_text', async ({ source, text: value }, requester) =>
      request({ action: 'setText', source, text: value }, requester),
    ),
  );
}
