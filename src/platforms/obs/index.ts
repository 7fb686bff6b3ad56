/** The OBS Studio connector (obs-websocket v5): client, normalize, egress and the action vocabulary. */
export {
  ObsActionSchema,
  ObsAnnotation,
  obsActionAnnotation,
  obsResultAnnotation,
  pendingActions,
  type ObsAction,
  type ObsActionResult,
  type PendingAction,
} from './actions.js';
// The client (obs-websocket-js) is imported by `import('./client.js')` where OBS is configured, never here.
export type { ObsConnectionStatus, ObsConnector, ObsConnectorOptions, ObsSnapshot } from './client.js';
export { listScenes, locateSceneItem, performObsAction, type ObsRequester } from './egress.js';
export { OBS_CHANNEL, OBS_EVENT_TYPE, OBS_SOURCE_ID, normalizeObsEvent, type ObsStudioState } from './normalize.js';
export { buildObsStatusEnvelope, type ObsStatusInput } from './status.js';
