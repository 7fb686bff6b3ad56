/** Chat lines to the commands step, as the commands and toolkit tests send them. */
import type { MessageBus } from '../../src/bus/index.js';
import { createStep, Topic, type Envelope } from '../../src/core/index.js';
import { permissionsFor } from '../../src/services/auth/roles.js';
import { chatEnvelope } from './envelopes.js';
import type { Observer } from './harness.js';
import { waitFor } from './wait.js';

/** A chatter with the permissions auth gives their role. */
export interface Chatter {
  id: string;
  name: string;
  role: string;
}

/**
 * Publishes `text` from `who` in `source`'s channel to the commands step, and resolves to what the step
 * handed on for it (to egress or finalization; a dead letter does not count). Replies go to egress.
 */
export async function sayToCommands(
  bus: MessageBus,
  observer: Observer,
  chat: { text: string; who: Chatter; displayName?: string; source: { platform: string; channel: string; channelId: string } },
): Promise<Envelope> {
  const { text, who } = chat;
  const envelope = chatEnvelope({
    text,
    source: { ...chat.source, egressDestination: Topic.egress },
    user: { ...who, displayName: chat.displayName ?? who.name, permissions: permissionsFor([who.role]) },
    routingSlip: [createStep('commands')],
  });
  await bus.publish('internal.commands.v1', new TextEncoder().encode(JSON.stringify(envelope)));
  return await waitFor(
    () => observer.received.find((item) => item.value.id === envelope.id && item.topic !== Topic.deadletter)?.value as Envelope | undefined,
    { timeoutMs: 15_000, message: `the outcome of ${text}` },
  );
}
