/**
 * How an OBS action travels in an envelope: an annotation of kind `obs.action` whose `payload` is one
 * ObsAction. Any service or rule may add one (a router rule with `annotate`, the `!scene` command, an LLM
 * tool); the `obs` step (topic `internal.obs.v1`) and the OBS egress perform every `obs.action` that has
 * no `obs.result` yet and record an `obs.result` annotation (same `payload.actionId`) with what happened.
 */
import { z } from 'zod';
import type { Annotation, Envelope } from '../../core/index.js';

/** Annotation kinds used for OBS actions and their results. */
export const ObsAnnotation = { action: 'obs.action', result: 'obs.result' } as const;

/** One action OBS can be asked to do. `scene` defaults to the current program scene where it applies. */
export const ObsActionSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('switchScene'), scene: z.string().min(1) }),
  z.object({
    action: z.enum(['showSource', 'hideSource', 'toggleSource']),
    source: z.string().min(1),
    scene: z.string().min(1).optional(),
    /** Undo the change after this long (e.g. show a raid banner for 10 s). */
    durationMs: z.number().int().positive().max(3_600_000).optional(),
  }),
  z.object({ action: z.literal('setText'), source: z.string().min(1), text: z.string().max(10_000) }),
  z.object({ action: z.enum(['startRecording', 'stopRecording']) }),
]);
export type ObsAction = z.infer<typeof ObsActionSchema>;

/** What performing an action did. */
export interface ObsActionResult {
  ok: boolean;
  /** Stable code on failure: NOT_CONNECTED, UNKNOWN_SCENE, UNKNOWN_SOURCE, OBS_REQUEST_FAILED, INVALID_ACTION. */
  code?: string;
  message: string;
  /** Scene names, when a scene was unknown (for a helpful reply). */
  scenes?: string[];
}

/** An `obs.action` annotation for an action (`reply: true` asks for a chat reply with the result). */
export function obsActionAnnotation(source: string, action: ObsAction, options: { reply?: boolean } = {}): Annotation {
  const id = `obs-${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36)}`;
  return {
    id,
    kind: ObsAnnotation.action,
    source,
    createdAt: new Date().toISOString(),
    label: action.action,
    payload: { ...action, actionId: id, ...(options.reply ? { reply: true } : {}) },
  };
}

/** An action the envelope still carries: parsed, or why it cannot be. */
export type PendingAction = { actionId: string; reply: boolean; action: ObsAction } | { actionId: string; reply: boolean; invalid: string };

/** The `obs.action` annotations without an `obs.result`, in order. */
export function pendingActions(envelope: Envelope): PendingAction[] {
  const annotations = envelope.annotations ?? [];
  const done = new Set(
    annotations
      .filter((annotation) => annotation.kind === ObsAnnotation.result)
      .map((annotation) => String(annotation.payload?.actionId ?? '')),
  );
  const out: PendingAction[] = [];
  for (const annotation of annotations) {
    if (annotation.kind !== ObsAnnotation.action) continue;
    const actionId = String(annotation.payload?.actionId ?? annotation.id);
    if (done.has(actionId)) continue;
    const reply = annotation.payload?.reply === true;
    const { actionId: _id, reply: _reply, ...rest } = annotation.payload ?? {};
    const parsed = ObsActionSchema.safeParse(rest);
    if (parsed.success) out.push({ actionId, reply, action: parsed.data });
    else
      out.push({
        actionId,
        reply,
        invalid: parsed.error.issues.map((issue) => `${issue.path.join('.') || 'action'}: ${issue.message}`).join('; '),
      });
  }
  return out;
}

/** The `obs.result` annotation recording one action's outcome. */
export function obsResultAnnotation(source: string, actionId: string, result: ObsActionResult): Annotation {
  return {
    id: `${actionId}-result`,
    kind: ObsAnnotation.result,
    source,
    createdAt: new Date().toISOString(),
    label: result.ok ? 'ok' : (result.code ?? 'failed'),
    value: result.ok,
    payload: { actionId, message: result.message, ...(result.code ? { code: result.code } : {}) },
  };
}
