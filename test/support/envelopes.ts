/** Envelopes as the connectors build them, for tests that feed a service or check a builder. */
import { createEnvelope, type Envelope, type EnvelopeSource, type RoutingStep } from '../../src/core/index.js';

/** Who says a chat line: the display name defaults to the login, the role to viewer. */
export interface ChatUser {
  id: string;
  name: string;
  displayName?: string;
  role?: string;
  permissions?: string[];
}

/**
 * An `external.chat.message.v1` envelope: `text` from `user` in `source`'s channel, in the payload and
 * as the message (with `messageId` when given), on `routingSlip` when given.
 */
export function chatEnvelope(options: {
  text: string;
  source: EnvelopeSource;
  user: ChatUser;
  messageId?: string;
  routingSlip?: RoutingStep[];
}): Envelope {
  const { user, text } = options;
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: options.source,
    user: {
      id: user.id,
      name: user.name,
      displayName: user.displayName ?? user.name,
      profileImageUrl: '',
      role: user.role ?? 'viewer',
      ...(user.permissions ? { permissions: user.permissions } : {}),
    },
    payload: { text },
    ...(options.routingSlip ? { routingSlip: options.routingSlip } : {}),
    extra: { message: { ...(options.messageId ? { id: options.messageId } : {}), text } },
  });
}
