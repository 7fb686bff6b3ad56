/**
 * Moderation requests: an action a moderator asks for outside the filters (through an LLM tool or the API,
 * e.g. undoing a timeout). The request travels as an envelope whose slip is the `moderation` step, so it
 * is performed by the service that holds the Twitch connection and recorded like any other envelope.
 */
import { z } from 'zod';
import { createAnnotation, createEnvelope, createStep, type Envelope } from '../../core/index.js';

export const MODERATION_STEP = 'moderation';
/** Annotation kind of a request, and of its result. */
export const REQUEST_ANNOTATION = 'moderation-request';
export const RESULT_ANNOTATION = 'moderation-result';

export const ModerationRequestSchema = z.discriminatedUnion('action', [
  z.object({
    action: z.literal('delete'),
    messageId: z.string().min(1).max(100),
    target: z.object({ login: z.string().min(1).max(64), id: z.string().max(64).optional() }).optional(),
    reason: z.string().max(300).default(''),
  }),
  z.object({
    action: z.literal('timeout'),
    target: z.object({ login: z.string().min(1).max(64), id: z.string().max(64).optional() }),
    durationSec: z.number().int().min(1).max(1_209_600),
    reason: z.string().max(300).default(''),
  }),
  z.object({
    action: z.literal('ban'),
    target: z.object({ login: z.string().min(1).max(64), id: z.string().max(64).optional() }),
    reason: z.string().max(300).default(''),
  }),
  z.object({
    action: z.literal('shoutout'),
    target: z.object({ login: z.string().min(1).max(64), id: z.string().max(64).optional() }),
    reason: z.string().max(300).default(''),
  }),
  /** Undo a logged action (unban a ban, lift a timeout). */
  z.object({ action: z.literal('undo'), logId: z.string().min(1).max(200), reason: z.string().max(300).default('') }),
]);
export type ModerationRequest = z.infer<typeof ModerationRequestSchema>;

export interface RequestOrigin {
  platform: string;
  channel: string;
  channelId?: string;
  /** Who asks: their login and role (re-checked by the service). */
  by: { id: string; login: string; role: string };
  /** `llm`, `api`, `chat`. */
  via: string;
}

/** The platform and `#login` channel of a channel key (`platform:login`, as `parseChannelKey` gives it). */
export function channelOfKey(channelKey: string): Pick<RequestOrigin, 'platform' | 'channel'> {
  const [platform, login] = channelKey.split(':', 2) as [string, string];
  return { platform, channel: `#${login}` };
}

/** The envelope that carries a request to the moderation step. */
export function createModerationRequest(request: ModerationRequest, origin: RequestOrigin): Envelope {
  return createEnvelope({
    type: 'moderation.request.v1',
    source: { platform: origin.platform, channel: origin.channel, channelId: origin.channelId ?? '' },
    user: { id: origin.by.id, name: origin.by.login, displayName: origin.by.login, profileImageUrl: '', role: origin.by.role },
    routingSlip: [createStep(MODERATION_STEP)],
    payload: { via: origin.via },
    extra: {
      annotations: [
        createAnnotation('moderation-request', {
          kind: REQUEST_ANNOTATION,
          label: request.action,
          payload: request as unknown as Record<string, unknown>,
        }),
      ],
    },
  });
}

/** The request an envelope carries, if any (validated). */
export function requestOf(envelope: Envelope): ModerationRequest | { error: string } | undefined {
  const annotation = (envelope.annotations ?? []).find((candidate) => candidate.kind === REQUEST_ANNOTATION);
  if (!annotation) return undefined;
  const parsed = ModerationRequestSchema.safeParse(annotation.payload);
  return parsed.success
    ? parsed.data
    : { error: parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ') };
}
