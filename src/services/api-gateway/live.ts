/**
 * The dashboard's live stream. One poller per gateway instance reads the store every
 * `API_GATEWAY_LIVE_POLL_MS` (default 1 s) while at least one client listens, and fans changes out to
 * every subscriber: new or changed events (the newest 100 are compared each tick, so an event also
 * shows up again when it is finalized), source documents, dead letters and service health.
 *
 * Polling the store rather than tapping the bus is deliberate: it works the same in every topology
 * (the events were written by persistence/finalizer, possibly in other processes), costs one small
 * query per tick per instance whatever the number of viewers, and sees exactly what the API returns.
 */
import type { Logger } from '../../runtime/logger.js';
import type { DeadLetterRecord, EventRecord, SourceState, Store } from '../../store/index.js';

export type LiveMessage =
  | { type: 'event'; data: EventSummary }
  | { type: 'source'; data: SourceState }
  | { type: 'sources'; data: SourceState[] }
  | { type: 'deadletter'; data: DeadLetterSummary }
  | { type: 'health'; data: unknown };

export type EventSummary = Omit<EventRecord, 'ingress' | 'final'> & {
  steps?: number;
  /** A platform event's kind (`channel.raid`) or a system event's status, for the activity feed. */
  kind?: string;
  /** The event's small payload (who raided with how many viewers, a source's status), when under 2 KiB. */
  detail?: Record<string, unknown>;
  /** Why a message got no reply (the finalized slip's last note or error), when known. */
  noReplyReason?: string;
};

export interface DeadLetterSummary {
  id: string;
  receivedAt: string;
  replayedAt?: string;
  replayCount: number;
  code: string;
  message: string;
  topic: string;
  service: string;
  /** Who sent it and what, when the dead letter holds a readable envelope. */
  userName?: string;
  text?: string;
  type?: string;
  replayTopic?: string;
  envelopeId?: string;
  correlationId?: string;
}

/** The list form of an event: everything but the two envelopes. */
export function summarizeEvent(record: EventRecord): EventSummary {
  const { ingress, final, ...rest } = record;
  const envelope = final ?? ingress?.envelope;
  const slip = envelope?.routingSlip;
  const external = envelope?.externalEvent;
  const kind = external?.kind ?? (typeof envelope?.payload?.status === 'string' ? envelope.payload.status : undefined);
  const payload = external?.payload ?? (envelope && envelope.type !== 'external.chat.message.v1' ? envelope.payload : undefined);
  const detail = payload && JSON.stringify(payload).length <= 2048 ? payload : undefined;
  const reason = final ? noReplyReason(final) : undefined;
  return {
    ...rest,
    ...(slip ? { steps: slip.length } : {}),
    ...(kind ? { kind } : {}),
    ...(detail ? { detail } : {}),
    ...(reason ? { noReplyReason: reason } : {}),
  };
}

/** Why a finalized chat message got no reply, in words; undefined when it got one or is not chat. */
export function noReplyReason(envelope: NonNullable<EventRecord['final']>): string | undefined {
  if (envelope.type !== 'external.chat.message.v1' || envelope.delivery?.delivered) return undefined;
  const error = envelope.errors?.at(-1);
  if (error) return `${error.code}${error.message ? `: ${error.message}` : ''}`;
  const notes = envelope.routingSlip.map((step) => step.notes).filter((note): note is string => Boolean(note));
  if (notes.length) return notes.at(-1);
  const spam = envelope.annotations?.find((annotation) => annotation.kind === 'spam' && annotation.value === true);
  if (spam)
    return `marked as spam${Array.isArray(spam.payload?.reasons) && spam.payload.reasons.length ? ` (${spam.payload.reasons.join(', ')})` : ''}`;
  if (envelope.outcome === 'unrouted' || envelope.routingSlip.length === 0)
    return 'no rule matched it (not a command or a question to the bot)';
  // Until steps say why they skipped, the skipping step tells what kind of reason it was.
  const skipped = envelope.routingSlip.filter((step) => step.status === 'SKIP').map((step) => step.id);
  if (skipped.includes('commands')) return 'unknown command, switched off, or on cooldown';
  if (skipped.includes('llm-bot')) return 'the LLM is not configured or chose not to answer';
  return 'nothing answered it';
}

export function summarizeDeadLetter(record: DeadLetterRecord): DeadLetterSummary {
  const letter = record.deadLetter;
  return {
    id: record.id,
    receivedAt: record.receivedAt,
    ...(record.replayedAt ? { replayedAt: record.replayedAt } : {}),
    replayCount: record.replayCount,
    code: letter.reason.code,
    message: letter.reason.message,
    topic: letter.topic,
    service: letter.service,
    ...(letter.envelope?.user?.displayName || letter.envelope?.user?.name
      ? { userName: letter.envelope.user.displayName || letter.envelope.user.name }
      : {}),
    ...((letter.envelope?.message?.text ?? (typeof letter.envelope?.payload?.text === 'string' ? letter.envelope.payload.text : undefined))
      ? { text: String(letter.envelope?.message?.text ?? letter.envelope?.payload?.text ?? '').slice(0, 500) }
      : {}),
    ...(letter.envelope?.type ? { type: letter.envelope.type } : {}),
    ...(letter.replayTopic ? { replayTopic: letter.replayTopic } : {}),
    ...(letter.envelopeId ? { envelopeId: letter.envelopeId } : {}),
    ...(letter.correlationId ? { correlationId: letter.correlationId } : {}),
  };
}

export interface LiveFeedOptions {
  store: () => Store;
  /** Sources the store does not hold (e.g. this gateway's console). */
  extraSources: () => SourceState[];
  health: () => Promise<unknown>;
  pollMs: number;
  logger: Logger;
  /** How many of the newest events are compared each tick. */
  window?: number;
}

export interface LiveFeed {
  /** Resolves once the baseline is known, so the subscriber only gets what changes afterwards. */
  subscribe(listener: (message: LiveMessage) => void): Promise<() => void>;
  /** Current sources (store + extra), as the poller last saw them. */
  sources(): SourceState[];
  stop(): void;
}

export function createLiveFeed(options: LiveFeedOptions): LiveFeed {
  const listeners = new Set<(message: LiveMessage) => void>();
  const window = options.window ?? 100;
  let events = new Map<string, string>();
  let sources = new Map<string, string>();
  let sourceDocs: SourceState[] = [];
  let letters = new Map<string, string>();
  let health = '';
  let timer: NodeJS.Timeout | undefined;
  let baseline: Promise<void> | undefined;
  let ticking: Promise<void> | undefined;
  let stopped = false;

  const emit = (message: LiveMessage) => {
    for (const listener of listeners) {
      try {
        listener(message);
      } catch (error) {
        options.logger.debug({ err: error }, 'live listener failed');
      }
    }
  };

  const eventKey = (record: EventRecord) =>
    `${record.outcome ?? ''}|${record.finalizedAt ?? ''}|${record.replyDelivered ?? ''}|${record.latencyMs ?? ''}`;
  const letterKey = (record: DeadLetterRecord) => `${record.replayedAt ?? ''}|${record.replayCount}`;

  /** One poll; `quiet` records the state without emitting (the baseline). */
  const tick = async (quiet: boolean) => {
    const store = options.store();
    const [page, stored, letterPage, report] = await Promise.all([
      store.listEvents({ limit: window }),
      store.listSources(),
      store.listDeadLetters({ limit: 50, includeReplayed: true }),
      options.health().catch(() => undefined),
    ]);

    /** The state of `items` by id; emits every item whose key differs from `previous` (unless quiet). */
    const changes = <T extends { id: string }>(
      items: T[],
      previous: Map<string, string>,
      key: (item: T) => string,
      message: (item: T) => LiveMessage,
    ) => {
      const next = new Map<string, string>();
      for (const item of items) {
        const value = key(item);
        next.set(item.id, value);
        if (!quiet && previous.get(item.id) !== value) emit(message(item));
      }
      return next;
    };
    // Oldest first, so the dashboard prepends in order.
    events = changes([...page.items].reverse(), events, eventKey, (record) => ({ type: 'event', data: summarizeEvent(record) }));
    const docs = [...stored, ...options.extraSources()];
    sources = changes(
      docs,
      sources,
      (doc) => JSON.stringify(doc),
      (doc) => ({ type: 'source', data: doc }),
    );
    sourceDocs = docs;
    letters = changes([...letterPage.items].reverse(), letters, letterKey, (record) => ({
      type: 'deadletter',
      data: summarizeDeadLetter(record),
    }));

    if (report !== undefined) {
      const key = JSON.stringify(report);
      if (!quiet && key !== health) emit({ type: 'health', data: report });
      health = key;
    }
  };

  const schedule = () => {
    if (stopped || listeners.size === 0) {
      timer = undefined;
      return;
    }
    timer = setTimeout(() => {
      ticking = tick(false)
        .catch((error) => options.logger.warn({ err: error }, 'live feed poll failed; will retry'))
        .finally(() => {
          ticking = undefined;
          schedule();
        });
    }, options.pollMs);
    timer.unref();
  };

  return {
    async subscribe(listener) {
      if (!baseline && listeners.size === 0) {
        baseline = (ticking ?? Promise.resolve()).then(() => tick(true)).finally(() => (baseline = undefined));
      }
      // A failing baseline still subscribes: the next tick reports everything as new.
      await (baseline ?? Promise.resolve()).catch((error) => options.logger.warn({ err: error }, 'live feed baseline failed'));
      listeners.add(listener);
      if (!timer && !ticking) schedule();
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0 && timer) {
          clearTimeout(timer);
          timer = undefined;
        }
      };
    },
    sources: () => sourceDocs,
    stop() {
      stopped = true;
      listeners.clear();
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
