/**
 * MCP tools for the LLM: external servers from MCP_SERVERS (stdio or streamable HTTP) plus the built-in
 * platform server, listed once at start and adapted to AI SDK tools per request.
 *
 * Permission gate: a tool is offered to the model only when the requester's role/permissions satisfy
 * its policy, and its `execute` re-checks the same policy before calling the server — so a viewer never
 * gets a moderator tool, whatever the model asks for (an unoffered tool name is rejected by the SDK; an
 * offered one still cannot run for the wrong person).
 *
 * Policies: platform tools declare their own (`_meta['bitbrat/policy']`). External servers are
 * configured by the operator: per tool (`tools.<name>`), else per server, else moderator-only — an
 * external tool can do anything, so it is not open to viewers unless someone says so. A server's
 * self-declared policy is ignored.
 */
// The MCP and AI SDKs are loaded when a toolbox is built (only with an LLM configured), not at start.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult, Tool as McpTool } from '@modelcontextprotocol/sdk/types.js';
import type { jsonSchema as JsonSchema, ToolSet } from 'ai';
import { z } from 'zod';
import { BitBratError } from '../../core/index.js';
import { Role } from '../auth/roles.js';
import { POLICY_META_KEY, REQUESTER_META_KEY, toolAllowed, type Requester, type ToolPolicy } from './mcp-platform.js';

/** Policy of an external tool nobody configured. */
export const DEFAULT_EXTERNAL_POLICY: ToolPolicy = { minRole: Role.moderator };
/** Per-call limit for an MCP tool (the overall LLM deadline still applies). */
export const DEFAULT_TOOL_TIMEOUT_MS = 10_000;
/** Tool output handed back to the model is cut here to bound tokens. */
const MAX_TOOL_OUTPUT_CHARS = 4_000;

const PolicyFields = {
  minRole: z.string().min(1).optional(),
  allowedRoles: z.array(z.string().min(1)).optional(),
  permission: z.string().min(1).optional(),
};

const ToolOverrideSchema = z.object({ ...PolicyFields, enabled: z.boolean().optional() });

export const McpServerConfigSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'must be 1–32 letters, digits, _ or -'),
    /** stdio: the executable and its arguments. */
    command: z.string().min(1).optional(),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).optional(),
    cwd: z.string().optional(),
    /** streamable HTTP: the endpoint. */
    url: z.url().optional(),
    headers: z.record(z.string(), z.string()).optional(),
    ...PolicyFields,
    /** Per-tool policy overrides, or `enabled: false` to hide a tool. */
    tools: z.record(z.string(), ToolOverrideSchema).optional(),
    timeoutMs: z.number().int().positive().optional(),
  })
  .refine((server) => Boolean(server.command) !== Boolean(server.url), {
    message: 'needs exactly one of command (stdio) or url (streamable HTTP)',
  });
export type McpServerConfig = z.infer<typeof McpServerConfigSchema>;

/** MCP_SERVERS: a JSON array of server configs; empty or unset means none. */
export const McpServersSchema = z.preprocess(
  (value) => {
    if (value === undefined || value === '') return [];
    if (typeof value !== 'string') return value;
    try {
      return JSON.parse(value);
    } catch (error) {
      return { invalidJson: (error as Error).message };
    }
  },
  z.array(McpServerConfigSchema, { error: 'must be a JSON array of MCP server configs' }).superRefine((servers, ctx) => {
    const seen = new Set<string>();
    for (const server of servers) {
      if (seen.has(server.name)) ctx.addIssue({ code: 'custom', message: `duplicate MCP server name ${server.name}` });
      seen.add(server.name);
    }
  }),
);

/** One tool as offered to the model. */
export interface ToolEntry {
  /** Name the model sees: platform tools as-is, external ones `<server>_<tool>`. */
  name: string;
  server: string;
  mcpName: string;
  description: string;
  inputSchema: Record<string, unknown>;
  policy: ToolPolicy;
  client: Client;
  timeoutMs: number;
}

/** What happened to one tool call in a request (for the envelope's annotations). */
export interface ToolAuditEntry {
  tool: string;
  outcome: 'ok' | 'error' | 'denied';
  ms: number;
  detail?: string;
}

export interface Toolbox {
  readonly entries: readonly ToolEntry[];
  /** Servers that could not be connected, with why. */
  readonly unavailable: ReadonlyArray<{ server: string; error: string }>;
  /** Names of the tools `requester` may use. */
  allowedFor(requester: Requester): string[];
  /** AI SDK tools for one request: only the allowed ones; `audit` receives every call. */
  toolsFor(requester: Requester, audit: ToolAuditEntry[]): ToolSet;
  close(): Promise<void>;
}

function exposedName(server: string, tool: string): string {
  return `${server}_${tool}`.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64);
}

function resultText(result: CallToolResult): string {
  const parts = (result.content ?? []).map((part) => {
    if (part.type === 'text') return part.text;
    if (part.type === 'resource' && 'text' in part.resource) return String(part.resource.text);
    return `[${part.type}]`;
  });
  const textValue = parts.join('\n');
  return textValue.length > MAX_TOOL_OUTPUT_CHARS ? `${textValue.slice(0, MAX_TOOL_OUTPUT_CHARS)}…` : textValue;
}

function objectSchema(schema: McpTool['inputSchema'] | undefined): Record<string, unknown> {
  // Providers want an object schema with `properties`, even for tools without arguments.
  return { ...(schema ?? {}), type: 'object', properties: schema?.properties ?? {} };
}

async function listAllTools(client: Client): Promise<McpTool[]> {
  const tools: McpTool[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listTools(cursor ? { cursor } : undefined);
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor);
  return tools;
}

type McpLogger = { warn: (...args: any[]) => void; info: (...args: any[]) => void; debug?: (...args: any[]) => void };

/** Connects one external MCP server; a stdio server's stderr goes to the logger line by line. */
export async function connectMcpServer(config: McpServerConfig, logger?: McpLogger): Promise<Client> {
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const client = new Client({ name: 'bitbrat-llm-bot', version: '1.0.0' });
  let transport;
  if (config.command) {
    const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');
    const stdio = new StdioClientTransport({
      command: config.command,
      args: config.args,
      env: config.env,
      cwd: config.cwd,
      stderr: 'pipe',
    });
    // Always drained, so a chatty server never blocks on a full pipe.
    let pending = '';
    stdio.stderr?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines)
        if (line.trim()) (logger?.debug ?? logger?.info)?.({ server: config.name, stderr: line.slice(0, 2_000) }, 'MCP server output');
    });
    transport = stdio;
  } else {
    const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
    transport = new StreamableHTTPClientTransport(new URL(config.url!), {
      requestInit: config.headers ? { headers: config.headers } : undefined,
    });
  }
  await client.connect(transport, { timeout: config.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS });
  return client;
}

export interface CreateToolboxOptions {
  /** The built-in platform server's client (policies come from its tool listing). */
  platform?: Client;
  servers?: McpServerConfig[];
  logger?: McpLogger;
  /** Replaces `connectMcpServer` (tests). */
  connect?: (config: McpServerConfig, logger?: McpLogger) => Promise<Client>;
}

/**
 * Connects every configured server and lists its tools. A server that fails to connect is logged and
 * left out (the bot still answers without it), never fatal.
 */
export async function createToolbox(options: CreateToolboxOptions): Promise<Toolbox> {
  const { jsonSchema, tool } = await import('ai');
  const entries: ToolEntry[] = [];
  const clients: Client[] = [];
  const unavailable: Array<{ server: string; error: string }> = [];

  if (options.platform) {
    for (const listed of await listAllTools(options.platform)) {
      const declared = listed._meta?.[POLICY_META_KEY] as ToolPolicy | undefined;
      entries.push({
        name: listed.name,
        server: 'platform',
        mcpName: listed.name,
        description: listed.description ?? listed.name,
        inputSchema: objectSchema(listed.inputSchema),
        // A platform tool without a declared policy is for the broadcaster only.
        policy: declared ?? { minRole: Role.broadcaster },
        client: options.platform,
        timeoutMs: DEFAULT_TOOL_TIMEOUT_MS,
      });
    }
  }

  for (const config of options.servers ?? []) {
    try {
      const client = await (options.connect ?? connectMcpServer)(config, options.logger);
      clients.push(client);
      const serverPolicy: ToolPolicy | undefined =
        config.minRole || config.allowedRoles || config.permission
          ? { minRole: config.minRole, allowedRoles: config.allowedRoles, permission: config.permission }
          : undefined;
      for (const listed of await listAllTools(client)) {
        const override = config.tools?.[listed.name];
        if (override?.enabled === false) continue;
        const toolPolicy: ToolPolicy | undefined =
          override && (override.minRole || override.allowedRoles || override.permission)
            ? { minRole: override.minRole, allowedRoles: override.allowedRoles, permission: override.permission }
            : undefined;
        const name = exposedName(config.name, listed.name);
        if (entries.some((entry) => entry.name === name)) {
          options.logger?.warn({ server: config.name, tool: listed.name }, 'duplicate MCP tool name; skipped');
          continue;
        }
        entries.push({
          name,
          server: config.name,
          mcpName: listed.name,
          description: `${listed.description ?? listed.name} (from ${config.name})`,
          inputSchema: objectSchema(listed.inputSchema),
          policy: toolPolicy ?? serverPolicy ?? DEFAULT_EXTERNAL_POLICY,
          client,
          timeoutMs: config.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS,
        });
      }
      options.logger?.info(
        { server: config.name, tools: entries.filter((entry) => entry.server === config.name).map((entry) => entry.name) },
        'MCP server connected',
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      unavailable.push({ server: config.name, error: message });
      options.logger?.warn({ server: config.name, err: error }, 'MCP server unavailable; its tools are not offered');
    }
  }

  return {
    entries,
    unavailable,
    allowedFor: (requester) => entries.filter((entry) => toolAllowed(entry.policy, requester)).map((entry) => entry.name),
    toolsFor(requester, audit) {
      const set: ToolSet = {};
      for (const entry of entries) {
        if (!toolAllowed(entry.policy, requester)) continue;
        set[entry.name] = tool({
          description: entry.description,
          inputSchema: jsonSchema<Record<string, unknown>>(entry.inputSchema as Parameters<typeof JsonSchema>[0]),
          execute: async (input, { abortSignal }) => {
            const started = Date.now();
            // Checked again at call time: the set is per request, but never trust that alone.
            if (!toolAllowed(entry.policy, requester)) {
              audit.push({ tool: entry.name, outcome: 'denied', ms: 0 });
              throw new BitBratError('FORBIDDEN', `tool ${entry.name} is not available to role ${requester.role}`);
            }
            let recorded = false;
            try {
              const result = (await entry.client.callTool(
                { name: entry.mcpName, arguments: input ?? {}, _meta: { [REQUESTER_META_KEY]: requester } },
                undefined,
                { signal: abortSignal, timeout: entry.timeoutMs },
              )) as CallToolResult;
              const output = resultText(result);
              audit.push({
                tool: entry.name,
                outcome: result.isError ? 'error' : 'ok',
                ms: Date.now() - started,
                ...(result.isError ? { detail: output.slice(0, 200) } : {}),
              });
              recorded = true;
              if (result.isError) throw new Error(output || `tool ${entry.name} failed`);
              return result.structuredContent ?? output;
            } catch (error) {
              if (!recorded)
                audit.push({
                  tool: entry.name,
                  outcome: 'error',
                  ms: Date.now() - started,
                  detail: (error as Error).message.slice(0, 200),
                });
              throw error;
            }
          },
        });
      }
      return set;
    },
    async close() {
      await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
    },
  };
}
