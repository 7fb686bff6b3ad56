// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { z } from 'zod';
import { createReply, instanceEgressTopic, stepTopic, Topic, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { createServiceIngress } from '../../runtime/ingress-buffer.js';
import { continueWith, defineService, type EnvelopeConsumer, type HandlerResult, type ServiceContext } from '../../runtime/service.js';
import {
  buildObsStatusEnvelope,
  normalizeObsEvent,
  obsResultAnnotation,
  pendingActions,
  performObsAction,
  type ObsAction,
  type ObsActionResult,
  type ObsConnector,
  type ObsSnapshot,
} from '../../platforms/obs/index.js';

const SERVICE = 'obs';

const ConfigSchema = z.object({
  /** e.g. ws://127.0.0.1:4455; unset: OBS is not configured (the service stays ready and says so). */
  OBS_WEBSOCKET_URL: env.url(),
  OBS_RECONNECT_INITIAL_MS: env.int(1_000, { min: 1 }),
  OBS_RECONNECT_MAX_MS: env.int(30_000, { min: 1 }),
  SOURCE_HEARTBEAT_MS: env.int(30_000, { min: 50 }),
});
type Config = z.infer<typeof ConfigSchema>;

const NOT_CONFIGURED_HINT =
  'OBS is not configured: set OBS_WEBSOCKET_URL (e.g. ws://127.0.0.1:4455) and, when OBS asks for one, the OBS_WEBSOCKET_PASSWORD secret';

/**
 * OBS Studio: keeps the `obs:studio` source current (program scene, streaming, recording), publishes OBS
 * events to ingress as `obs.event.v1`, and performs the `obs.action` annotations an envelope carries —
 * as the `obs` slip step (topic `internal.obs.v1`, used by `!scene`, rules and LLM tools) and as the
 * egress for envelopes of platform `obs`. A `durationMs` on show/hide is undone after that long.
 */
export const service = defineService<Config>({
  name: SERVICE,
  configSchema: ConfigSchema,
  needsStore: false,
  setup(ctx: ServiceContext<Config>) {
    let connector: ObsConnector | undefined;
    let heartbeat: NodeJS.Timeout | undefined;
    let statusChain: Promise<void> = Promise.resolve();
    // OBS events wait here, in order, while the bus refuses them; a loss is counted (INGRESS_BUFFER_MAX).
    const ingress = createServiceIngress(ctx, 'obs');
    const undoTimers = new Set<NodeJS.Timeout>();

    const reportHealth = (snapshot: ObsSnapshot | undefined) => {
      if (!snapshot) return ctx.health.set('obs', true, NOT_CONFIGURED_HINT, { configured: false });
      if (snapshot.status === 'connected')
        return ctx.health.set('obs', true, `connected to OBS (scene "${snapshot.state.programScene ?? '?'}")`, { configured: true });
      // OBS being closed is normal between streams, so that stays ready (saying why); a refused password
      // or an unsupported OBS needs the operator, so that is not ready.
      const why = snapshot.lastError ? `: ${snapshot.lastError.message}` : '';
      return ctx.health.set('obs', snapshot.status !== 'error', `OBS ${snapshot.status}${why}`, { configured: true });
    };

    const publishStatus = () => {
      const snapshot = connector?.snapshot();
      const envelope = buildObsStatusEnvelope({
        status: snapshot?.status ?? 'not_configured',
        authStatus: snapshot?.authStatus ?? 'missing',
        state: snapshot?.state ?? {},
        metrics: { ...(snapshot?.counters ?? { events: 0, actions: 0, errors: 0, reconnects: 0 }), lost: ingress.lost },
        lastError: snapshot?.lastError ?? null,
        ...(snapshot ? {} : { hint: NOT_CONFIGURED_HINT }),
      });
      statusChain = statusChain.then(() =>
        ctx
          .publish(Topic.ingress, envelope)
          .catch((error: unknown) => ctx.logger.warn({ err: error }, 'could not publish the OBS source status')),
      );
      return statusChain;
    };

    const perform = async (action: ObsAction): Promise<ObsActionResult> => {
      if (!connector) return { ok: false, code: 'NOT_CONFIGURED', message: NOT_CONFIGURED_HINT };
      const result = await performObsAction(connector, action);
      connector.countAction(result.ok);
      if (result.undo) {
        const undo = result.undo;
        const timer = setTimeout(
          () => {
            undoTimers.delete(timer);
            void perform(undo).then((undone) => {
              if (!undone.ok) ctx.logger.warn({ action: undo, result: undone }, 'could not undo a timed OBS action');
            });
          },
          (action as { durationMs?: number }).durationMs,
        );
        timer.unref();
        undoTimers.add(timer);
      }
      return result;
    };

    /** Performs every pending action on the envelope, recording `obs.result` (and a chat reply when asked). */
    const performPending = async (envelope: Envelope): Promise<Envelope> => {
      const pending = pendingActions(envelope);
      if (pending.length === 0) return envelope;
      const annotations = [...(envelope.annotations ?? [])];
      const candidates = [...(envelope.candidates ?? [])];
      for (const item of pending) {
        // A redelivered envelope never reaches here twice for one step attempt: the engine's idempotency
        // key (envelope, step, attempt) acks it untouched (R8), so a toggle is not undone by a redelivery.
        const result: ObsActionResult =
          'invalid' in item
            ? { ok: false, code: 'INVALID_ACTION', message: `invalid OBS action: ${item.invalid}` }
            : await perform(item.action);
        if (!result.ok) ctx.logger.warn({ actionId: item.actionId, code: result.code, message: result.message }, 'OBS action not done');
        annotations.push(obsResultAnnotation(SERVICE, item.actionId, result));
        if (item.reply) candidates.push(createReply(SERVICE, replyText(result), { obs: true }));
      }
      return { ...envelope, annotations, candidates };
    };

    const step: EnvelopeConsumer = {
      mode: 'step',
      async handle(envelope): Promise<HandlerResult> {
        return continueWith(await performPending(envelope));
      },
    };
    const egress: EnvelopeConsumer = {
      mode: 'stage',
      next: 'finalization',
      platforms: ['obs'],
      async handle(envelope): Promise<HandlerResult> {
        return continueWith(await performPending(envelope));
      },
    };

    return {
      consumers: { [stepTopic(SERVICE)]: step, 'internal.egress.{instanceId}.v1': egress },
      routes(app) {
        app.get('/_debug/obs', async () => ({
          ...(connector?.snapshot() ?? { status: 'not_configured', hint: NOT_CONFIGURED_HINT }),
          ingest: ingress.snapshot(),
        }));
      },
      async start() {
        const url = ctx.config.OBS_WEBSOCKET_URL;
        if (!url) {
          reportHealth(undefined);
          void publishStatus();
        } else {
          const password = await ctx.secrets.get('OBS_WEBSOCKET_PASSWORD');
          ctx.registerSecret(password);
          // obs-websocket-js is loaded only when OBS is configured.
          const { createObsConnector } = await import('../../platforms/obs/client.js');
          connector = createObsConnector({
            url,
            password: password || undefined,
            reconnectInitialMs: ctx.config.OBS_RECONNECT_INITIAL_MS,
            reconnectMaxMs: ctx.config.OBS_RECONNECT_MAX_MS,
            logger: ctx.logger.child({ component: 'obs' }),
            onEvent(eventType, eventData) {
              const envelope = normalizeObsEvent(eventType, eventData, { egressDestination: instanceEgressTopic(ctx.instanceId) });
              ingress.push(envelope);
            },
            onStateChange(snapshot) {
              reportHealth(snapshot);
              void publishStatus();
            },
          });
          reportHealth(connector.snapshot());
          connector.start();
        }
        heartbeat = setInterval(() => void publishStatus(), ctx.config.SOURCE_HEARTBEAT_MS);
        heartbeat.unref();
      },
      async stop() {
        if (heartbeat) clearInterval(heartbeat);
        for (const timer of undoTimers) clearTimeout(timer);
        undoTimers.clear();
        await connector?.stop();
        await ingress.close();
        await statusChain;
      },
    };
  },
});

/** The chat reply for an action that asked for one. */
function replyText(result: ObsActionResult): string {
  if (result.ok) return `OBS: ${result.message}.`;
  if (result.code === 'UNKNOWN_SCENE' && result.scenes) return `OBS: ${result.message}. Scenes: ${result.scenes.join(', ') || '(none)'}`;
  // The operator's hint (what to configure) is for the dashboard, not for chat.
  if (result.code === 'NOT_CONFIGURED' || result.code === 'NOT_CONNECTED') return 'OBS is not connected right now.';
  return `OBS: ${result.message}.`;
}

export default service;
