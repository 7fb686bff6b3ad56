/**
 * OBS wire shapes → envelopes: obs-websocket events become `obs.event.v1` envelopes (externalEvent.kind
 * = the OBS event type, e.g. `CurrentProgramSceneChanged`), and the connection's state becomes a
 * `system.source.status` for the `obs:studio` source, with the program scene and the streaming and
 * recording state in its metadata.
 */
import { EventType, createEnvelope, newId, type Envelope } from '../../core/index.js';

/** Envelope type of OBS events. */
export const OBS_EVENT_TYPE = 'obs.event.v1';
/** The one OBS connection's source id and channel. */
export const OBS_CHANNEL = 'studio';
export const OBS_SOURCE_ID = `obs:${OBS_CHANNEL}`;

/** The OBS state kept in the source's metadata. */
export interface ObsStudioState {
  programScene?: string;
  streaming?: boolean;
  recording?: boolean;
  scenes?: string[];
  obsVersion?: string;
}

/** One OBS event as an ingress envelope. `egressDestination`: where OBS actions for it are delivered. */
export function normalizeObsEvent(eventType: string, eventData: Record<string, unknown> | undefined, options: { egressDestination?: string; at?: Date } = {}): Envelope {
  const at = options.at ?? new Date();
  const envelope = createEnvelope({
    type: OBS_EVENT_TYPE,
    timestamp: at,
    source: { platform: 'obs', channel: OBS_CHANNEL, channelId: '', ...(options.egressDestination ? { egressDestination: options.egressDestination } : {}) },
    payload: { eventType, ...(eventData ?? {}) },
  });
  envelope.externalEvent = { id: newId(), source: 'obs', kind: eventType, version: '5', createdAt: at.toISOString(), payload: { ...(eventData ?? {}) } };
  return envelope;
}

export interface ObsStatusInput {
  status: 'connected' | 'disconnected' | 'connecting' | 'error' | 'not_configured';
  authStatus: 'valid' | 'invalid' | 'missing' | 'unknown';
  state: ObsStudioState;
  metrics: { events: number; actions: number; errors: number; reconnects: number };
  lastError: { code: string; message: string; at: string } | null;
  /** What to set, when not configured. */
  hint?: string;
  at?: Date;
}

/** The `system.source.status` envelope for the OBS source (persistence merges it into `sources`). */
export function buildObsStatusEnvelope(input: ObsStatusInput): Envelope {
  const at = input.at ?? new Date();
  return createEnvelope({
    type: EventType.sourceStatus,
    timestamp: at,
    source: { platform: 'obs', channel: OBS_CHANNEL, channelId: '' },
    payload: {
      sourceId: OBS_SOURCE_ID,
      platform: 'obs',
      displayName: 'OBS Studio',
      status: input.status,
      authStatus: input.authStatus,
      metrics: { messagesIn: input.metrics.events, messagesOut: input.metrics.actions, errors: input.metrics.errors, reconnects: input.metrics.reconnects, lastHeartbeat: at.toISOString() },
      lastError: input.lastError,
      metadata: {
        programScene: input.state.programScene ?? null,
        streaming: input.state.streaming ?? null,
        recording: input.state.recording ?? null,
        scenes: input.state.scenes ?? [],
        ...(input.state.obsVersion ? { obsVersion: input.state.obsVersion } : {}),
        ...(input.hint ? { hint: input.hint } : {}),
      },
    },
  });
}
