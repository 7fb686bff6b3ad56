import type { Envelope } from '../../core/index.js';
import type { EventRecord, SourceState } from '../../store/index.js';

/** The event row for an envelope as it arrives on ingress. */
export function ingressRecord(envelope: Envelope): EventRecord {
  const raw = envelope.payload?.raw ?? envelope.externalEvent?.rawPayload;
  return {
    ...summary(envelope),
    ingress: { envelope, ...(raw !== undefined ? { raw } : {}) },
  };
}

/** The event row for an envelope as it is finalized. */
export function finalRecord(envelope: Envelope, now = Date.now()): EventRecord {
  const replies = (envelope.candidates ?? []).filter((candidate) => candidate.kind === 'text');
  const deliveredAt = envelope.delivery?.at ? Date.parse(envelope.delivery.at) : now;
  return {
    ...summary(envelope),
    outcome: envelope.outcome ?? (envelope.errors?.length ? 'failed' : 'completed'),
    finalizedAt: new Date(now).toISOString(),
    final: envelope,
    replyDelivered: envelope.delivery?.delivered ?? false,
    ...(replies.length ? { replyText: replies.map((reply) => reply.text).join('\n') } : {}),
    errors: (envelope.errors ?? []).map((error) => ({
      code: error.code,
      message: error.message,
      ...(error.step ? { step: error.step } : {}),
    })),
    latencyMs: Math.max(0, (Number.isNaN(deliveredAt) ? now : deliveredAt) - Date.parse(envelope.timestamp)),
  };
}

function summary(envelope: Envelope): EventRecord {
  return {
    id: envelope.id,
    correlationId: envelope.correlationId,
    type: envelope.type,
    platform: envelope.source.platform,
    channel: envelope.source.channel,
    userId: envelope.user.id,
    userName: envelope.user.name,
    ...(envelope.message?.text !== undefined
      ? { text: envelope.message.text }
      : typeof envelope.payload?.text === 'string'
        ? { text: envelope.payload.text }
        : {}),
    receivedAt: envelope.timestamp,
  };
}

const STATUS_FIELDS = [
  'displayName',
  'status',
  'lastError',
  'authStatus',
  'viewerCount',
  'permissions',
  'latencyMs',
  'metadata',
  'streamStatus',
] as const;

/**
 * The `sources` patch for a system event (seed 002): `system.source.status` carries connector state and
 * metrics; `system.stream.online` / `offline` carry stream state. Returns undefined for other events.
 */
export function sourcePatch(envelope: Envelope): SourceState | undefined {
  const payload = envelope.payload as Record<string, unknown>;
  const platform = String(payload.platform ?? envelope.source.platform);
  const sourceId =
    typeof payload.sourceId === 'string' ? payload.sourceId : `${platform}:${envelope.source.channel || envelope.source.channelId}`;
  const at = envelope.timestamp;
  if (envelope.type === 'system.source.status') {
    const patch: SourceState = { id: sourceId, platform, lastStatusUpdate: at };
    for (const field of STATUS_FIELDS)
      if (payload[field] !== undefined) (patch as unknown as Record<string, unknown>)[field] = payload[field];
    if (payload.metrics && typeof payload.metrics === 'object') patch.metrics = payload.metrics as SourceState['metrics'];
    return patch;
  }
  if (envelope.type === 'system.stream.online' || envelope.type === 'system.stream.offline') {
    const online = envelope.type === 'system.stream.online';
    const metadata: Record<string, unknown> = {};
    for (const key of ['title', 'game', 'gameName', 'startedAt', 'streamId']) if (payload[key] !== undefined) metadata[key] = payload[key];
    if (!online) metadata.startedAt = null;
    return {
      id: sourceId,
      platform,
      streamStatus: online ? 'online' : 'offline',
      lastStreamUpdate: at,
      ...(online && typeof payload.viewerCount === 'number' ? { viewerCount: payload.viewerCount } : {}),
      ...(!online ? { viewerCount: null } : {}),
      ...(Object.keys(metadata).length ? { metadata } : {}),
    };
  }
  return undefined;
}
