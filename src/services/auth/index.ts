import { EventType, Topic, createAnnotation, type Annotation, type Envelope } from '../../core/index.js';
import { continueWith, defineService, handled } from '../../runtime/service.js';
import type { TouchUserInput, UserRecord } from '../../store/index.js';
import { createServiceBatcher } from '../../runtime/store-batcher.js';
import { badgeRole, resolveIdentity, trustedApiRole } from './resolve.js';
import { Role } from './roles.js';

export * from './roles.js';
export * from './resolve.js';

const SERVICE = 'auth';

/**
 * Chat messages' user touches are written together (one store call per batch instead of one per message).
 * A batch holds at most the messages in flight and waits at most this long for more after its first.
 * 5 ms, not less: each store call costs the event loop several hundred microseconds (with PostgreSQL,
 * mostly its backend running on our core), so at 500 messages/s a 2 ms window made 240 calls a second
 * and kept the loop 7 points busier, which showed in the pipeline's p99; a reply waits ~3 ms more.
 */
const TOUCH_BATCH_SIZE = 200;
const TOUCH_BATCH_DELAY_MS = 5;

function annotation(kind: string, label: string, payload: Record<string, unknown>): Annotation {
  return createAnnotation(SERVICE, { kind, label, value: true, payload });
}

/** Whether the envelope is about a real person (not the platform itself). */
function hasRealUser(envelope: Envelope): boolean {
  const { id, role } = envelope.user;
  return id.trim() !== '' && id !== 'system' && role !== Role.system;
}

/**
 * Resolves who sent an event: platform badges (or a trusted console's role), overridden by roles stored
 * by moderators, then the permissions that follow. Chat messages also update the user's record (written in
 * batches with the other messages in flight), and a first message ever is annotated `first-message`. Banned users are handled here: nothing further runs.
 * System events pass through untouched.
 */
export const service = defineService({
  name: SERVICE,
  needsStore: true,
  setup(ctx) {
    const touches = createServiceBatcher<TouchUserInput, { user: UserRecord; created: boolean }>(
      ctx,
      { size: TOUCH_BATCH_SIZE, delayMs: TOUCH_BATCH_DELAY_MS },
      (batch) => ctx.store.touchUsers(batch),
    );
    return {
      consumers: {
        [Topic.ingress]: {
          mode: 'stage',
          next: Topic.authenticated,
          async handle(envelope) {
            if (envelope.type === EventType.chatMessage && !hasRealUser(envelope)) {
              // A chat message always comes from a viewer at least: one without a usable user id (e.g. a
              // line without tags) or claiming the system role gets viewer rights, never system's.
              const identity = resolveIdentity(Role.viewer, []);
              return continueWith({
                ...envelope,
                user: { ...envelope.user, role: identity.role, roles: identity.roles, permissions: identity.permissions },
              });
            }
            if (envelope.type.startsWith('system.') || !hasRealUser(envelope)) {
              if (!envelope.user.role) envelope.user.role = Role.system;
              return continueWith(envelope);
            }
            const platform = envelope.source.platform;
            let storedRoles: string[] = [];
            let firstMessage: string | undefined;
            if (envelope.type === EventType.chatMessage) {
              const { user, created } = await touches.add({
                platform,
                userId: envelope.user.id,
                login: envelope.user.name,
                displayName: envelope.user.displayName || undefined,
                at: envelope.timestamp,
              });
              storedRoles = user.roles;
              if (created) firstMessage = user.firstSeen;
            } else {
              storedRoles = (await ctx.store.getUser(`${platform}:${envelope.user.id}`))?.roles ?? [];
            }
            const identity = resolveIdentity(trustedApiRole(envelope) ?? badgeRole(envelope), storedRoles);
            const out: Envelope = {
              ...envelope,
              user: { ...envelope.user, role: identity.role, roles: identity.roles, permissions: identity.permissions },
              annotations: [...(envelope.annotations ?? [])],
            };
            if (firstMessage) out.annotations!.push(annotation('first-message', 'first-message', { firstSeen: firstMessage }));
            if (identity.banned) {
              out.annotations!.push(annotation('moderation', 'banned', { reason: 'the user is banned', action: 'ignore' }));
              return handled(out, 'handled');
            }
            return continueWith(out);
          },
        },
      },
    };
  },
});

export default service;
