/**
 * `!scene <name>`: moderators and the broadcaster switch the OBS program scene. The command does not talk
 * to OBS itself (OBS may be connected to another process): it adds an `obs.action` annotation asking for
 * a reply and inserts the `obs` step right after the current one. The obs step switches the scene, or,
 * when OBS has no such scene, replies with the list of scenes. From anyone below moderator it does nothing
 * to OBS.
 */
import { createStep, type Envelope } from '../../core/index.js';
import { obsActionAnnotation } from '../../platforms/obs/actions.js';
import { Role, roleAtLeast } from '../auth/roles.js';

export type SceneCommandOutcome =
  | { kind: 'refuse'; message: string }
  | { kind: 'reply'; message: string }
  | { kind: 'act'; envelope: Envelope };

/** What `!scene` does for this envelope; `stepIndex` is the commands step's index in the slip. */
export function sceneCommand(
  envelope: Envelope,
  args: string[],
  options: { prefix: string; stepIndex: number; source: string },
): SceneCommandOutcome {
  const who = envelope.user.displayName || envelope.user.name;
  if (!roleAtLeast(envelope.user.role || Role.viewer, Role.moderator))
    return { kind: 'refuse', message: `@${who} only moderators can switch scenes.` };
  const scene = args.join(' ').trim();
  if (!scene) return { kind: 'reply', message: `@${who} usage: ${options.prefix}scene <scene name>` };
  const slip = [...envelope.routingSlip];
  const at = options.stepIndex >= 0 && options.stepIndex < slip.length ? options.stepIndex + 1 : slip.length;
  slip.splice(at, 0, createStep('obs'));
  return {
    kind: 'act',
    envelope: {
      ...envelope,
      routingSlip: slip,
      annotations: [
        ...(envelope.annotations ?? []),
        obsActionAnnotation(options.source, { action: 'switchScene', scene }, { reply: true }),
      ],
    },
  };
}
