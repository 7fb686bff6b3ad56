/**
 * Counts the final records that took effect per event, for "finalized exactly once" checks. The events
 * table's primary key makes a second row impossible, so counting rows can never find a duplicate; what
 * can duplicate is a second finalization of the same row (a redelivered final message written again).
 * A trigger notes every write that sets an event's `finalized_at`.
 */
import { sql } from './pg-server.js';

const AUDIT_TABLE = 'test_finalization_audit';

/** Installs the trigger on `schema`.events (the services' migrations must have run). */
export async function auditFinalizations(url: string, schema = 'public'): Promise<void> {
  const table = `"${schema}".${AUDIT_TABLE}`;
  await sql(url, `CREATE TABLE IF NOT EXISTS ${table} (event_id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  await sql(
    url,
    `CREATE OR REPLACE FUNCTION "${schema}".${AUDIT_TABLE}_note() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN INSERT INTO ${table} (event_id) VALUES (NEW.id); RETURN NULL; END $$`,
  );
  // UPDATE OF fires whenever the statement sets finalized_at, even to the same value. (No CREATE OR
  // REPLACE TRIGGER: PostgreSQL before 14 lacks it.)
  await sql(url, `DROP TRIGGER IF EXISTS ${AUDIT_TABLE} ON "${schema}".events`);
  await sql(
    url,
    `CREATE TRIGGER ${AUDIT_TABLE} AFTER INSERT OR UPDATE OF finalized_at ON "${schema}".events
     FOR EACH ROW WHEN (NEW.finalized_at IS NOT NULL) EXECUTE FUNCTION "${schema}".${AUDIT_TABLE}_note()`,
  );
}

/** How many times each of `ids` was finalized (0 for none) since `auditFinalizations`. */
export async function finalizationsPerEvent(url: string, ids: string[], schema = 'public'): Promise<Map<string, number>> {
  const { rows } = await sql(
    url,
    `SELECT event_id, count(*)::int AS n FROM "${schema}".${AUDIT_TABLE} WHERE event_id = ANY($1) GROUP BY event_id`,
    [ids],
  );
  const counts = new Map(ids.map((id) => [id, 0]));
  for (const row of rows as Array<{ event_id: string; n: number }>) counts.set(row.event_id, row.n);
  return counts;
}

/** The ids finalized more than once. */
export function finalizedMoreThanOnce(counts: Map<string, number>): string[] {
  return [...counts].filter(([, n]) => n > 1).map(([id]) => id);
}
