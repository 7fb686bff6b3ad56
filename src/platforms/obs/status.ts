/**
 * The OBS connection as a source: a `system.source.status` for `obs:studio` (persistence merges it into
 * `sources`), with the program scene, the scene list and the streaming and recording state in its
 * metadata. (There is no token to manage: the obs-websocket password is a plain secret.)
 */
import { createSourceStatus, type Envelope } from '../../core/index.js';
import { OBS_CHANNEL, OBS_SOURCE_ID, type ObsStudioState } from './normalize.js';

export interface ObsStatusInput {
  status: 'connected' | 'disconnected' | 'connecting' | 'error' | 'not_configured';
  authStatus: 'valid' | 'invalid' | 'missing' | 'unknown';
  state: ObsStudioState;
  /** `lost`: OBS events that could not reach the bus (counted by the ingress buffer). */
  metrics: { events: number; actions: number; errors: number; reconnects: number; lost?: number };
  lastError: { code: string; message: string; at: string } | null;
  /** What to set, when not configured. */
  hint?: string;
  at?: Date;
}

/** The `system.source.status` envelope for the OBS source (persistence merges it into `sources`). */
export function buildObsStatusEnvelope(input: ObsStatusInput): Envelope {
  return createSourceStatus({
    at: input.at ?? new Date(),
    source: { platform: 'obs', channel: OBS_CHANNEL, channelId: '' },
    sourceId: OBS_SOURCE_ID,
    displayName: 'OBS Studio',
    status: input.status,
    authStatus: input.authStatus,
    metrics: {
      messagesIn: input.metrics.events,
      messagesOut: input.metrics.actions,
      errors: input.metrics.errors,
      reconnects: input.metrics.reconnects,
      ...(input.metrics.lost ? { lost: input.metrics.lost } : {}),
    },
    lastError: input.lastError,
    details: {
      metadata: {
        programScene: input.state.programScene ?? null,
        streaming: input.state.streaming ?? null,
        recording: input.state.recording ?? null,
        scenes: input.state.scenes ?? [],
        ...(input.state.obsVersion ? { obsVersion: input.state.obsVersion } : {}),
        // `howToConnect` is what the dashboard's source card shows as help.
        ...(input.hint ? { howToConnect: input.hint } : {}),
      },
    },
  });
}
