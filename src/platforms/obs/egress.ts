/**
 * OBS actions out: each ObsAction becomes obs-websocket requests. Showing or hiding a source looks it
 * up in the scene first and then inside the scene's groups (GetSceneItemId, then SetSceneItemEnabled
 * on the scene or group that holds it), because streamers keep alert sources in groups.
 */
import type { ObsAction, ObsActionResult } from './actions.js';

/** What performing needs from the connection (the connector implements it; tests may fake it). */
export interface ObsRequester {
  /** One obs-websocket request; rejects with `{ code, message }` when OBS refuses it. */
  call(requestType: string, requestData?: Record<string, unknown>): Promise<Record<string, unknown> | undefined>;
  /** The program scene as last known. */
  programScene(): string | undefined;
}

/** obs-websocket's "resource not found" request status. */
const RESOURCE_NOT_FOUND = 600;

const codeOf = (error: unknown): number | undefined =>
  typeof (error as { code?: unknown })?.code === 'number' ? (error as { code: number }).code : undefined;
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** Scene names as OBS lists them in its UI (top to bottom). */
export async function listScenes(requester: ObsRequester): Promise<string[]> {
  const response = (await requester.call('GetSceneList')) ?? {};
  const scenes = Array.isArray(response.scenes) ? (response.scenes as Array<{ sceneName?: unknown; sceneIndex?: unknown }>) : [];
  return scenes
    .slice()
    .sort((a, b) => Number(b.sceneIndex ?? 0) - Number(a.sceneIndex ?? 0))
    .map((scene) => String(scene.sceneName ?? ''))
    .filter(Boolean);
}

/** Where a source sits: the scene or group to address and its scene item id; undefined when absent. */
export async function locateSceneItem(
  requester: ObsRequester,
  scene: string,
  source: string,
): Promise<{ container: string; sceneItemId: number; enabled?: boolean } | undefined> {
  const direct = await requester.call('GetSceneItemId', { sceneName: scene, sourceName: source }).catch((error: unknown) => {
    if (codeOf(error) === RESOURCE_NOT_FOUND) return undefined;
    throw error;
  });
  const items = ((await requester.call('GetSceneItemList', { sceneName: scene }))?.sceneItems ?? []) as Array<{
    sceneItemId: number;
    sourceName: string;
    isGroup?: boolean;
    sceneItemEnabled?: boolean;
  }>;
  if (direct && typeof direct.sceneItemId === 'number') {
    return {
      container: scene,
      sceneItemId: direct.sceneItemId,
      enabled: items.find((item) => item.sceneItemId === direct.sceneItemId)?.sceneItemEnabled,
    };
  }
  for (const group of items.filter((item) => item.isGroup)) {
    const inGroup = ((await requester.call('GetGroupSceneItemList', { sceneName: group.sourceName }))?.sceneItems ?? []) as Array<{
      sceneItemId: number;
      sourceName: string;
      sceneItemEnabled?: boolean;
    }>;
    const found = inGroup.find((item) => item.sourceName === source);
    if (!found) continue;
    const id = await requester.call('GetSceneItemId', { sceneName: group.sourceName, sourceName: source });
    return { container: group.sourceName, sceneItemId: Number(id?.sceneItemId ?? found.sceneItemId), enabled: found.sceneItemEnabled };
  }
  return undefined;
}

/** Performs one action. Expected failures (unknown scene, OBS refusing) are results, not throws. */
export async function performObsAction(requester: ObsRequester, action: ObsAction): Promise<ObsActionResult & { undo?: ObsAction }> {
  try {
    switch (action.action) {
      case 'switchScene': {
        const scenes = await listScenes(requester);
        const match =
          scenes.find((name) => name === action.scene) ?? scenes.find((name) => name.toLowerCase() === action.scene.toLowerCase());
        if (!match) return { ok: false, code: 'UNKNOWN_SCENE', message: `there is no scene "${action.scene}"`, scenes };
        await requester.call('SetCurrentProgramScene', { sceneName: match });
        return { ok: true, message: `switched to scene "${match}"` };
      }
      case 'showSource':
      case 'hideSource':
      case 'toggleSource': {
        const scene = action.scene ?? requester.programScene();
        if (!scene) return { ok: false, code: 'UNKNOWN_SCENE', message: 'no scene given and the program scene is not known' };
        const item = await locateSceneItem(requester, scene, action.source).catch((error: unknown) => {
          if (codeOf(error) === RESOURCE_NOT_FOUND) return null;
          throw error;
        });
        if (item === null) return { ok: false, code: 'UNKNOWN_SCENE', message: `there is no scene "${scene}"` };
        if (!item)
          return { ok: false, code: 'UNKNOWN_SOURCE', message: `there is no source "${action.source}" in scene "${scene}" or its groups` };
        const enabled = action.action === 'showSource' ? true : action.action === 'hideSource' ? false : !item.enabled;
        await requester.call('SetSceneItemEnabled', {
          sceneName: item.container,
          sceneItemId: item.sceneItemId,
          sceneItemEnabled: enabled,
        });
        const undo: ObsAction | undefined = action.durationMs
          ? { action: enabled ? 'hideSource' : 'showSource', source: action.source, scene }
          : undefined;
        return { ok: true, message: `${enabled ? 'showed' : 'hid'} "${action.source}" in "${item.container}"`, ...(undo ? { undo } : {}) };
      }
      case 'setText':
        await requester.call('SetInputSettings', { inputName: action.source, inputSettings: { text: action.text }, overlay: true });
        return { ok: true, message: `set the text of "${action.source}"` };
      case 'startRecording':
        await requester.call('StartRecord');
        return { ok: true, message: 'recording started' };
      case 'stopRecording':
        await requester.call('StopRecord');
        return { ok: true, message: 'recording stopped' };
    }
  } catch (error) {
    if ((error as { code?: unknown })?.code === 'NOT_CONNECTED') return { ok: false, code: 'NOT_CONNECTED', message: messageOf(error) };
    const code = codeOf(error);
    if (code === RESOURCE_NOT_FOUND) return { ok: false, code: 'UNKNOWN_SOURCE', message: messageOf(error) };
    return {
      ok: false,
      code: 'OBS_REQUEST_FAILED',
      message: `OBS refused the request${code !== undefined ? ` (${code})` : ''}: ${messageOf(error)}`,
    };
  }
}
