/**
 * The built-in platform MCP server over an embedded store, as the LLM tool tests use it: one server per
 * test file, what its tools publish and every call's outcome recorded, and calls made as a given requester.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import type { Annotation, Envelope } from '../../src/core/index.js';
import {
  POLICY_META_KEY,
  REQUESTER_META_KEY,
  connectPlatformMcp,
  toolAllowed,
  type PlatformMcp,
  type PlatformMcpOptions,
  type Requester,
  type ToolPolicy,
} from '../../src/services/llm-bot/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { waitFor } from './wait.js';

/** A requester of `role` in the streamer's Twitch channel: id `u-<role>`, login `<role>_login`. */
export const requesterAs = (role: string, extra: Partial<Requester> = {}): Requester => ({
  platform: 'twitch',
  channel: '#streamer',
  channelId: '1000',
  userId: `u-${role}`,
  login: `${role}_login`,
  role,
  ...extra,
});

/** The text of a tool result's first content part. */
export const resultText = (result: Record<string, unknown>): string => (result.content as Array<{ text: string }>)[0]!.text;

export interface PlatformMcpFixture {
  /** The connected server (set once the file's `beforeAll` ran). */
  readonly platform: PlatformMcp;
  /** What the tools published, in order; a test may empty it. */
  readonly published: Array<{ topic: string; envelope: Envelope }>;
  /** `<tool>:<outcome>` of every call, in order; a test may empty it. */
  readonly calls: string[];
  /** The embedded store the server reads (set once the file's `beforeAll` ran). */
  readonly store: Store;
  /** Calls a tool as `requester` (without one: as nobody). */
  call(name: string, args: Record<string, unknown>, requester?: Requester): ReturnType<PlatformMcp['client']['callTool']>;
}

/**
 * Before the file's tests: an embedded store that `seed` fills, and the platform MCP server over it; after
 * them both closed.
 */
export function usePlatformMcp(
  seed: (store: Store) => Promise<void>,
  options: Pick<PlatformMcpOptions, 'confirmWithinMs'> = {},
): PlatformMcpFixture {
  let store: Store | undefined;
  let platform: PlatformMcp | undefined;
  const published: PlatformMcpFixture['published'] = [];
  const calls: string[] = [];

  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    await store.init();
    await seed(store);
    platform = await connectPlatformMcp({
      store,
      publish: async (topic, envelope) => void published.push({ topic, envelope }),
      onCall: (event) => calls.push(`${event.tool}:${event.outcome}`),
      ...options,
    });
  });

  afterAll(async () => {
    await platform?.close();
    await store?.close();
  });

  const connected = () => {
    if (!platform) throw new Error('the platform MCP server is not connected yet');
    return platform;
  };
  return {
    get platform() {
      return connected();
    },
    get store() {
      if (!store) throw new Error('the store is not open yet');
      return store;
    },
    published,
    calls,
    call: (name, args, requester) =>
      connected().client.callTool({ name, arguments: args, ...(requester ? { _meta: { [REQUESTER_META_KEY]: requester } } : {}) }),
  };
}

/**
 * Checks that the server lists exactly `names` among the tools starting with `prefix`, that each declares
 * its policy from `policies`, and that the policy refuses viewers, subscribers, VIPs and banned users and
 * lets moderators and the broadcaster through (`requester` builds each role's requester).
 */
export async function expectModeratorTools(
  platform: PlatformMcp,
  options: { prefix: string; names: string[]; policies: Record<string, ToolPolicy>; requester: (role: string) => Requester },
): Promise<void> {
  const tools = (await platform.client.listTools()).tools.filter((tool) => tool.name.startsWith(options.prefix));
  expect(tools.map((tool) => tool.name).sort()).toEqual(options.names);
  for (const tool of tools) {
    const policy = tool._meta?.[POLICY_META_KEY] as ToolPolicy;
    expect(policy).toEqual(options.policies[tool.name]);
    for (const role of ['viewer', 'subscriber', 'vip', 'banned']) expect(toolAllowed(policy, options.requester(role))).toBe(false);
    for (const role of ['moderator', 'broadcaster']) expect(toolAllowed(policy, options.requester(role))).toBe(true);
  }
}

/**
 * Finalizes the next request the tools publish as the service performing it and the finalizer would: the
 * request envelope, with the annotation `answer` makes for it, recorded as completed.
 */
export async function answerNextRequest(fixture: PlatformMcpFixture, answer: (envelope: Envelope) => Annotation): Promise<void> {
  const envelope = await waitFor(() => fixture.published.at(-1)?.envelope, { timeoutMs: 5_000, message: 'a published request' });
  await fixture.store.recordFinal([
    {
      id: envelope.id,
      correlationId: envelope.correlationId,
      type: envelope.type,
      receivedAt: envelope.timestamp,
      outcome: 'completed',
      final: { ...envelope, annotations: [...(envelope.annotations ?? []), answer(envelope)] },
    },
  ]);
}
