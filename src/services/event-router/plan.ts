// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import {
  createAnnotation,
  createStep,
  currentStepIndex,
  replanSlip,
  type Annotation,
  type Envelope,
  type RoutingStep,
} from '../../core/index.js';
import type { RuleAction, RuleMatch, Stage } from './rules.js';

const SERVICE = 'event-router';

/** How many times one envelope may come back to the router before it is considered a routing loop. */
export const MAX_ROUTER_VISITS = 4;

export type RoutingDecision =
  | { kind: 'continue'; envelope: Envelope }
  | { kind: 'handled'; envelope: Envelope; outcome: 'handled' | 'unrouted' }
  | { kind: 'loop'; envelope: Envelope; visits: number };

/** The steps of an action's slip. */
export function stepsFor(action: RuleAction): RoutingStep[] {
  return (action.slip ?? []).map((entry) => {
    if (typeof entry === 'string') return createStep(entry);
    const { id, ...options } = entry;
    return createStep(id, options);
  });
}

function routeAnnotation(stage: Stage, match: RuleMatch | undefined): Annotation {
  return createAnnotation(SERVICE, {
    kind: 'route',
    label: match ? match.rule.id : 'unrouted',
    payload: {
      stage,
      ...(match
        ? {
            rule: match.rule.id,
            priority: match.rule.priority,
            slip: (match.action.slip ?? []).map((entry) => (typeof entry === 'string' ? entry : entry.id)),
          }
        : {}),
    },
  });
}

function actionAnnotations(action: RuleAction): Annotation[] {
  const list = action.annotate === undefined ? [] : Array.isArray(action.annotate) ? action.annotate : [action.annotate];
  return list.map((annotate) => createAnnotation(SERVICE, annotate));
}

/**
 * Applies a rule match (or its absence) to an envelope. On `ingress` the slip is assigned; on `enriched`
 * the router is itself the current step, so the remaining slip is re-planned after it and every finished
 * step stays as history (R10). No match → `handled` with outcome `unrouted`.
 */
export function applyDecision(envelope: Envelope, stage: Stage, match: RuleMatch | undefined): RoutingDecision {
  const out: Envelope = {
    ...envelope,
    source: { ...envelope.source },
    annotations: [...(envelope.annotations ?? []), routeAnnotation(stage, match)],
  };
  if (!match) return { kind: 'handled', envelope: out, outcome: 'unrouted' };
  const { action } = match;
  out.annotations!.push(...actionAnnotations(action));
  if (action.egressDestination) out.source.egressDestination = action.egressDestination;
  if (action.finalizationDestination) out.finalizationDestination = action.finalizationDestination;
  if (action.outcome) return { kind: 'handled', envelope: out, outcome: action.outcome };

  const steps = stepsFor(action);
  const visits = envelope.routingSlip.filter((step) => step.id === 'router').length;
  if (steps.some((step) => step.id === 'router') && visits >= MAX_ROUTER_VISITS) return { kind: 'loop', envelope: out, visits };
  const index = currentStepIndex(envelope);
  const current = stage === 'enriched' && index >= 0 ? envelope.routingSlip[index] : undefined;
  // replanSlip keeps only finished steps; the router's own (still running) step is kept in place.
  return { kind: 'continue', envelope: replanSlip(out, current ? [current, ...steps] : steps) };
}
