/**
 * Webhook event subscriptions, reconciled: the app's subscriptions are listed, the missing ones created
 * (one `POST /public/v1/events/subscriptions` per channel, method `webhook`) and the stale ones deleted —
 * duplicates, other versions, and channels no longer configured. Run at every start, so a restart after a
 * config change or a lost subscription converges without piling up duplicates.
 */
import type { KickClient } from './client.js';
import { KICK_EVENT_TYPES } from './wire.js';

/** The event version BitBrat speaks for every type. */
export const KICK_EVENT_VERSION = 1;

export interface ReconcileResult {
  created: Array<{ broadcasterUserId: number; event: string; id?: string }>;
  deleted: string[];
  kept: string[];
  /** Events Kick refused to subscribe, with its reason. */
  errors: Array<{ broadcasterUserId: number; event: string; error: string }>;
  /** Per broadcaster: the event types subscribed after reconciling. */
  active: Record<string, string[]>;
}

/** Brings the subscriptions for `broadcasterUserIds` to exactly `events` (version 1, webhook). */
export async function reconcileKickSubscriptions(
  client: KickClient,
  broadcasterUserIds: number[],
  events: readonly string[] = KICK_EVENT_TYPES,
): Promise<ReconcileResult> {
  const result: ReconcileResult = { created: [], deleted: [], kept: [], errors: [], active: {} };
  const wanted = new Set(broadcasterUserIds.flatMap((id) => events.map((event) => `${id}:${event}`)));
  const have = new Set<string>();
  const stale: string[] = [];
  for (const subscription of await client.listSubscriptions()) {
    const key = `${subscription.broadcaster_user_id}:${subscription.event}`;
    if (subscription.method === 'webhook' && Number(subscription.version) === KICK_EVENT_VERSION && wanted.has(key) && !have.has(key)) {
      have.add(key);
      result.kept.push(subscription.id);
    } else {
      stale.push(subscription.id);
    }
  }
  if (stale.length > 0) {
    await client.deleteSubscriptions(stale);
    result.deleted.push(...stale);
  }
  for (const broadcasterUserId of broadcasterUserIds) {
    const missing = events.filter((event) => !have.has(`${broadcasterUserId}:${event}`));
    if (missing.length > 0) {
      const created = await client.createSubscriptions(
        broadcasterUserId,
        missing.map((name) => ({ name, version: KICK_EVENT_VERSION })),
      );
      for (const entry of created) {
        if (entry.error) result.errors.push({ broadcasterUserId, event: entry.name, error: entry.error });
        else {
          have.add(`${broadcasterUserId}:${entry.name}`);
          result.created.push({ broadcasterUserId, event: entry.name, ...(entry.subscription_id ? { id: entry.subscription_id } : {}) });
        }
      }
    }
    result.active[String(broadcasterUserId)] = events.filter((event) => have.has(`${broadcasterUserId}:${event}`));
  }
  return result;
}
