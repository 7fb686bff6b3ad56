/** Logical topic names (the bus driver prepends BUS_PREFIX). */
export const Topic = {
  ingress: 'internal.ingress.v1',
  authenticated: 'internal.authenticated.v1',
  router: 'internal.router.v1',
  egress: 'internal.egress.v1',
  finalizer: 'internal.finalizer.v1',
  deadletter: 'internal.deadletter.v1',
} as const;
export type Topic = (typeof Topic)[keyof typeof Topic];

/** Topic of a slip step: `internal.<step>.v1`. */
export function stepTopic(stepId: string): string {
  return `internal.${stepId}.v1`;
}

/** Per-instance egress topic: replies for connections held by one instance. */
export function instanceEgressTopic(instanceId: string): string {
  return `internal.egress.${instanceId}.v1`;
}
