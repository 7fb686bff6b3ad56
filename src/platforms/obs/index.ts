/** The OBS Studio connector (obs-websocket v5): client, normalize, egress and the action vocabulary. */
export { ObsActionSchema, ObsAnnotation, obsActionAnnotation, obsResultAnnotation, pendingActions, type ObsAction, type ObsActionResult, type PendingAction } from './actions.js';
export { OBS_FORWARDED_EVENTS, OBS_RPC_VERSION, ObsCloseCode, createObsConnector, type ObsConnectionStatus, type ObsConnector, type ObsConnectorOptions, type ObsSnapshot } from './client.js';
export { listScenes, locateSceneItem, performObsAction, type ObsRequester } from './egress.js';
export { OBS_CHANNEL, OBS_EVENT_TYPE, OBS_SOURCE_ID, normalizeObsEvent, type ObsStudioState } from './normalize.js';
export { buildObsStatusEnvelope, type ObsStatusInput } from './status.js';
