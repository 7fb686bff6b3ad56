/**
 * OBS wire shapes → envelopes: obs-websocket events become `obs.event.v1` envelopes (externalEvent.kind
 * = the OBS event type, e.g. `CurrentProgramSceneChanged`).
 */
import { createEnvelope, newId, type Envelope } from '../../core/index.js';

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
export function normalizeObsEvent(
  eventType: string,
  eventData: Record<string, unknown> | undefined,
  options: { egressDestination?: string; at?: Date } = {},
): Envelope {
  const at = options.at ?? new Date();
  const envelope = createEnvelope({
    type: OBS_EVENT_TYPE,
    timestamp: at,
    source: {
      platform: 'obs',
      channel: OBS_CHANNEL,
      channelId: '',
      ...(options.egressDestination ? { egressDestination: options.egressDestination } : {}),
    },
    payload: { eventType, ...(eventData ?? {}) },
  });
  envelope.externalEvent = {
    id: newId(),
    source: 'obs',
    kind: eventType,
    version: '5',
    createdAt: at.toISOString(),
    payload: { ...(eventData ?? {}) },
  };
  return envelope;
}
