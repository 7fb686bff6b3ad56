/**
 * The built-in MCP server: BitBrat's own platform tools for the LLM, served by an `McpServer` and
 * reached in-process through a linked `InMemoryTransport` pair, so platform tools and external MCP
 * servers go through the same client-side adapter and permission gate (mcp.ts).
 *
 * Every tool declares the role/permission it needs in `_meta['bitbrat/policy']`; the adapter uses it to
 * decide what to offer, and the tool re-checks the requester it is told about in the call's `_meta`
 * (defence in depth: a call without a requester, or from one without the right, is refused here too).
 */
// The MCP SDK is loaded when the server is built (only with an LLM configured), not at start.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { Envelope } from '../../core/index.js';
import type { EventRecord, Store } from '../../store/types.js';
import { registerObsTools } from './mcp-obs.js';
import { registerModerationTools } from './mcp-moderation.js';
import { Permission, Role, roleAtLeast } from '../auth/roles.js';
import { findStreamSource } from '../stream-source.js';
import { streamStateFrom, formatDuration, type StreamState } from './prompt.js';

/** `_meta` key carrying a tool's access policy in a tool listing. */
export const POLICY_META_KEY = 'bitbrat/policy';
/** `_meta` key carrying who asked, on every tool call made by the llm-bot. */
export const REQUESTER_META_KEY = 'bitbrat/requester';

/** Who may use a tool. Every field present must hold; `banned` never may. */
export interface ToolPolicy {
  /** Lowest role allowed (role order from auth: viewer < subscriber < vip < moderator < broadcaster). */
  minRole?: string;
  /** Explicit list of roles allowed. */
  allowedRoles?: string[];
  /** A permission the requester must hold (from auth's `user.permissions`). */
  permission?: string;
}

/** The person a tool runs for (from the envelope, set by auth). */
export interface Requester {
  platform: string;
  channel: string;
  channelId: string;
  userId: string;
  login: string;
  role: string;
  permissions?: string[];
}

/** Whether `requester` satisfies `policy`. No policy means nobody (callers pass a default). */
export function toolAllowed(policy: ToolPolicy | undefined, requester: Pick<Requester, 'role' | 'permissions'> | undefined): boolean {
  if (!policy || !requester) return false;
  const role = requester.role || Role.viewer;
  if (role === Role.banned) return false;
  if (!policy.minRole && !policy.allowedRoles && !policy.permission) return false;
  if (policy.minRole && !roleAtLeast(role, policy.minRole)) return false;
  if (policy.allowedRoles && !policy.allowedRoles.includes(role)) return false;
  if (policy.permission && !(requester.permissions ?? []).includes(policy.permission)) return false;
  return true;
}

/** Stream state of the requester's channel, for the prompt and the `stream_status` tool. */
export async function readStreamState(
  store: Pick<Store, 'getSource' | 'listSources'>,
  source: { platform: string; channel: string; channelId?: string },
): Promise<StreamState | undefined> {
  return streamStateFrom(await findStreamSource(store, source));
}

/** A tool result whose text is `value` (JSON unless already a string), marked as an error when `isError`. */
export const toolText = (value: unknown, isError = false): CallToolResult => ({
  content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value) }],
  ...(isError ? { isError: true } : {}),
});
const text = toolText;

/** What one platform tool call came to (audit, tests). */
export interface ToolCallEvent {
  tool: string;
  requester?: Requester;
  outcome: 'ok' | 'denied' | 'error';
  detail?: string;
}

/** What a group of platform tools (OBS, moderation) gets from the platform server, besides its store. */
export interface ToolGroupOptions {
  /** Publishes an envelope to a topic; without it the tools that ask another service say they are unavailable. */
  publish?: (topic: string, envelope: Envelope) => Promise<void>;
  requesterFrom(meta: Record<string, unknown> | undefined): Requester | undefined;
  onCall?: (event: ToolCallEvent) => void;
  /** How long a tool that asks another service waits for its answer before saying it asked (default 3 s). */
  confirmWithinMs?: number;
}

/** How often a tool looks for the finalized request while it waits for the answer. */
const CONFIRM_POLL_MS = 100;

/**
 * Waits up to `withinMs` for the finalizer's record of a request envelope a tool published (the service that
 * performs it annotates its answer there); undefined when the request is not finalized by then.
 */
export async function awaitFinalRecord(
  store: Pick<Store, 'getEvent'>,
  envelopeId: string,
  withinMs = 3_000,
): Promise<EventRecord | undefined> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const record = await store.getEvent(envelopeId).catch(() => undefined);
    if (record?.outcome) return record;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, CONFIRM_POLL_MS));
  }
}

/**
 * The server-side gate shared by every group of platform tools: `guarded(name, run)` wraps a handler so
 * each call re-checks the requester against `policies[name]`, reports the outcome to `onCall` and turns a
 * thrown error into an error result; `meta(name)` is the `_meta` a tool lists its policy in.
 */
export function createToolGuard<N extends string>(
  policies: Record<N, ToolPolicy>,
  requesterOf: (meta: Record<string, unknown> | undefined) => Requester | undefined,
  onCall?: (event: ToolCallEvent) => void,
) {
  const guarded = <A>(name: N, run: (args: A, requester: Requester) => Promise<CallToolResult>) => {
    return async (args: A, extra: { _meta?: Record<string, unknown> }): Promise<CallToolResult> => {
      const requester = requesterOf(extra._meta);
      if (!toolAllowed(policies[name], requester)) {
        onCall?.({ tool: name, requester, outcome: 'denied' });
        return text(`forbidden: ${name} is not available to ${requester ? `role ${requester.role}` : 'an unknown requester'}`, true);
      }
      try {
        const result = await run(args, requester!);
        onCall?.({ tool: name, requester, outcome: result.isError ? 'error' : 'ok' });
        return result;
      } catch (error) {
        onCall?.({ tool: name, requester, outcome: 'error', detail: (error as Error).message });
        return text(`error: ${(error as Error).message}`, true);
      }
    };
  };
  const meta = (name: N) => ({ [POLICY_META_KEY]: policies[name] });
  return { guarded, meta };
}

/** The requester an llm-bot tool call names in its `_meta`. */
export function requesterFrom(meta: Record<string, unknown> | undefined): Requester | undefined {
  const value = meta?.[REQUESTER_META_KEY];
  if (!value || typeof value !== 'object') return undefined;
  const r = value as Partial<Requester>;
  if (typeof r.role !== 'string' || typeof r.platform !== 'string') return undefined;
  return {
    platform: r.platform,
    channel: String(r.channel ?? ''),
    channelId: String(r.channelId ?? ''),
    userId: String(r.userId ?? ''),
    login: String(r.login ?? ''),
    role: r.role,
    permissions: Array.isArray(r.permissions) ? r.permissions.map(String) : undefined,
  };
}

/** Policies of the built-in tools. */
export const PLATFORM_TOOL_POLICIES = {
  stream_status: { minRole: Role.viewer },
  user_info: { minRole: Role.viewer },
  list_commands: { minRole: Role.viewer },
  set_user_role: { minRole: Role.moderator, permission: Permission.usersModerate },
} as const satisfies Record<string, ToolPolicy>;

/** Roles a moderator may grant or remove through the model (never moderator or broadcaster). */
const GRANTABLE_ROLES = [Role.trusted] as const;

export interface PlatformMcpOptions {
  store: Store;
  /** Publishes to the bus (the OBS tools ask the obs service through it). */
  publish?: (topic: string, envelope: Envelope) => Promise<void>;
  /** Called after each tool call with what happened (audit, tests). */
  onCall?: (event: ToolCallEvent) => void;
  /** How long an OBS or moderation tool waits for the service's answer (default 3 s). */
  confirmWithinMs?: number;
}

/** Builds the platform MCP server (not connected). */
export async function createPlatformMcpServer(options: PlatformMcpOptions): Promise<McpServer> {
  const { McpServer } = await import('@modelcontextprotocol/sdk/server/mcp.js');
  const { store, onCall } = options;
  const server = new McpServer({ name: 'bitbrat-platform', version: '1.0.0' });

  const { guarded, meta: policyMeta } = createToolGuard(PLATFORM_TOOL_POLICIES, requesterFrom, onCall);

  server.registerTool(
    'stream_status',
    {
      description: "The current state of this channel's stream: online or offline, uptime, game, title and viewer count.",
      inputSchema: {},
      annotations: { readOnlyHint: true },
      _meta: policyMeta('stream_status'),
    },
    guarded<Record<string, never>>('stream_status', async (_args, requester) => {
      const state = await readStreamState(store, requester);
      if (!state) return text({ known: false, note: 'no stream information is available for this channel' });
      const started = state.startedAt ? Date.parse(state.startedAt) : Number.NaN;
      return text({
        online: state.online ?? null,
        uptime: state.online && !Number.isNaN(started) ? formatDuration(Date.now() - started) : null,
        startedAt: state.startedAt ?? null,
        game: state.game ?? null,
        title: state.title ?? null,
        viewerCount: state.viewerCount ?? null,
      });
    }),
  );

  server.registerTool(
    'user_info',
    {
      description:
        'What the platform knows about a chatter by login name: when they were first and last seen, how many messages they sent, and their roles.',
      inputSchema: { login: z.string().min(1).max(64).describe('The login name, without @') },
      annotations: { readOnlyHint: true },
      _meta: policyMeta('user_info'),
    },
    guarded<{ login: string }>('user_info', async ({ login }, requester) => {
      const user = await store.findUserByLogin(requester.platform, login.replace(/^@/, '').toLowerCase());
      if (!user) return text({ found: false, login });
      return text({
        found: true,
        login: user.login,
        displayName: user.displayName ?? user.login,
        firstSeen: user.firstSeen,
        lastSeen: user.lastSeen,
        messageCount: user.messageCount,
        roles: user.roles,
      });
    }),
  );

  server.registerTool(
    'list_commands',
    {
      description: 'The chat commands this channel has (name, aliases, minimum role).',
      inputSchema: {},
      annotations: { readOnlyHint: true },
      _meta: policyMeta('list_commands'),
    },
    guarded<Record<string, never>>('list_commands', async () => {
      const commands = (await store.listCommands()).filter((command) => command.enabled);
      return text(commands.map((command) => ({ name: command.name, aliases: command.aliases, minRole: command.minRole })));
    }),
  );

  server.registerTool(
    'set_user_role',
    {
      description: 'Moderators only: add or remove the "trusted" role of a chatter by login name.',
      inputSchema: {
        login: z.string().min(1).max(64).describe('The login name, without @'),
        role: z.enum(GRANTABLE_ROLES).describe('The role to change'),
        action: z.enum(['add', 'remove']),
      },
      annotations: { destructiveHint: false, idempotentHint: true },
      _meta: policyMeta('set_user_role'),
    },
    guarded<{ login: string; role: (typeof GRANTABLE_ROLES)[number]; action: 'add' | 'remove' }>(
      'set_user_role',
      async ({ login, role, action }, requester) => {
        const user = await store.findUserByLogin(requester.platform, login.replace(/^@/, '').toLowerCase());
        if (!user) return text({ ok: false, reason: `no user ${login}` }, true);
        const roles = action === 'add' ? [...new Set([...user.roles, role])] : user.roles.filter((existing) => existing !== role);
        const updated = await store.setUserRoles(user.id, roles);
        return text({ ok: true, login: user.login, roles: updated?.roles ?? roles });
      },
    ),
  );

  const group = { store, publish: options.publish, requesterFrom, onCall, confirmWithinMs: options.confirmWithinMs };
  registerObsTools(server, group);
  registerModerationTools(server, group);
  return server;
}

export interface PlatformMcp {
  client: Client;
  server: McpServer;
  close(): Promise<void>;
}

/** Starts the platform server and connects a client to it in-process. */
export async function connectPlatformMcp(options: PlatformMcpOptions): Promise<PlatformMcp> {
  const server = await createPlatformMcpServer(options);
  const { InMemoryTransport } = await import('@modelcontextprotocol/sdk/inMemory.js');
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  await server.connect(serverTransport);
  const client = new Client({ name: 'bitbrat-llm-bot', version: '1.0.0' });
  await client.connect(clientTransport);
  return {
    client,
    server,
    async close() {
      await client.close().catch(() => undefined);
      await server.close().catch(() => undefined);
    },
  };
}
