import type { SourceState } from './types.js';

/**
 * The fields a source's status and its stream state carry, each stamped by its own timestamp. Two writers
 * record a connection's status (the connector directly, persistence from the bus, which may be behind), so
 * a patch stamped older than the record changes none of the fields of that group. The SQL drivers apply the
 * same rule in `bitbrat_merge_source` (migration 5).
 */
export const STALE_SOURCE_FIELDS = {
  status: ['status', 'lastStatusUpdate', 'lastError', 'authStatus', 'permissions', 'latencyMs', 'metrics'],
  stream: ['streamStatus', 'lastStreamUpdate', 'viewerCount', 'metadata'],
} as const satisfies Record<string, ReadonlyArray<keyof SourceState>>;

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function deepMerge(base: unknown, patch: unknown): unknown {
  if (!isObject(base) || !isObject(patch)) return patch;
  const result: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch))
    result[key] = isObject(value) && isObject(result[key]) ? deepMerge(result[key], value) : value;
  return result;
}

/** `patch` without the groups whose timestamp is older than the record's. */
function withoutStale(existing: SourceState, patch: SourceState): SourceState {
  const result: Record<string, unknown> = { ...patch };
  const stale = (stamp: 'lastStatusUpdate' | 'lastStreamUpdate') =>
    typeof patch[stamp] === 'string' && typeof existing[stamp] === 'string' && patch[stamp]! < existing[stamp]!;
  if (stale('lastStatusUpdate')) for (const field of STALE_SOURCE_FIELDS.status) delete result[field];
  if (stale('lastStreamUpdate')) for (const field of STALE_SOURCE_FIELDS.stream) delete result[field];
  return result as unknown as SourceState;
}

/**
 * Merges a patch into a source record, as every driver does: top-level fields replace (null clears),
 * metrics/permissions/metadata merge deeply, and a group stamped older than the record is left out.
 * `patch` must be plain JSON (no undefined values).
 */
export function mergeSourceState(existing: SourceState | undefined, patch: SourceState): SourceState {
  if (!existing) return patch;
  const clean = withoutStale(existing, patch);
  const result: Record<string, unknown> = { ...existing, ...clean };
  for (const key of ['metrics', 'permissions', 'metadata'] as const) {
    if (isObject(existing[key]) && isObject(clean[key])) result[key] = deepMerge(existing[key], clean[key]);
  }
  return result as unknown as SourceState;
}
