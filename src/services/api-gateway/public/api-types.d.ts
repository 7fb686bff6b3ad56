/**
 * The API shapes the dashboard (app.js, `// @ts-check`) reads, taken from the server's own types so a
 * renamed or removed field fails `tsc` instead of the page. Nothing here is written by hand twice: every
 * name is re-exported or derived from the gateway, store and runtime types.
 */
import type { CommandRecord, RuleRecord, SourceState } from '../../../store/index.js';
import type { ComponentHealth } from '../../../runtime/health.js';
import type { CommandHelp, EventDetail, HealthReport, ServiceHealth, SessionInfo, TimelineStep } from '../api.js';
import type { DeadLetterSummary, EventSummary, LiveMessage } from '../live.js';
import type { StatsBucket, StatsSeries } from '../stats.js';
import type { TwitchAccount, TwitchSetup } from '../twitch-setup.js';
import type { Reaction } from '../../reactions/reactions.js';

export type { Reaction, TwitchAccount, TwitchSetup };
export type {
  CommandHelp,
  CommandRecord,
  ComponentHealth,
  DeadLetterSummary,
  EventDetail,
  EventSummary,
  HealthReport,
  LiveMessage,
  RuleRecord,
  ServiceHealth,
  SessionInfo,
  SourceState,
  StatsBucket,
  StatsSeries,
  TimelineStep,
};

/** One page of a list endpoint. */
export interface ListPage<T> {
  items: T[];
  nextCursor?: string;
}

/** GET /api/deadletters. */
export type DeadLetterPage = ListPage<unknown> & { summaries: DeadLetterSummary[] };

/** GET /api/rules. */
export type RulePage = ListPage<RuleRecord> & { defaults: string[] };

/** POST /api/rules/restore-defaults. */
export interface RestoreResult {
  restored: string[];
  reset: string[];
}

/** POST /api/deadletters/:id/replay. */
export interface ReplayResult {
  id: string;
  topic: string;
  envelopeId: string;
  replayedAt: string;
  replayCount: number;
}
