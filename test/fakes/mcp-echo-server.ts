/**
 * A tiny external MCP server for tests. Run it over stdio with `tsx test/fakes/mcp-echo-server.ts --stdio`
 * (as MCP_SERVERS would spawn it), or in-process over streamable HTTP with `startEchoHttpServer()`.
 * Tools:
 * - `echo` { text } → the text back, prefixed `echo: `;
 * - `add` { a, b } → the sum (structured content);
 * - `wipe_chat` {} → a pretend-dangerous action, for permission tests.
 * Every call is appended as a JSON line to the file named by MCP_ECHO_LOG (stdio) or passed to
 * `onCall` (HTTP), so a test can prove a tool did — or did not — run on the server side.
 */
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

export interface EchoCall {
  tool: string;
  args: unknown;
  meta: unknown;
}

export function createEchoServer(onCall: (call: EchoCall) => void): McpServer {
  const server = new McpServer({ name: 'echo', version: '1.0.0' });
  server.registerTool('echo', { description: 'Echoes the text back.', inputSchema: { text: z.string() } }, async ({ text }, extra) => {
    onCall({ tool: 'echo', args: { text }, meta: extra._meta });
    return { content: [{ type: 'text', text: `echo: ${text}` }] };
  });
  server.registerTool(
    'add',
    { description: 'Adds two numbers.', inputSchema: { a: z.number(), b: z.number() }, outputSchema: { sum: z.number() } },
    async ({ a, b }, extra) => {
      onCall({ tool: 'add', args: { a, b }, meta: extra._meta });
      return { content: [{ type: 'text', text: String(a + b) }], structuredContent: { sum: a + b } };
    },
  );
  server.registerTool('wipe_chat', { description: 'Clears the whole chat (dangerous).', inputSchema: {} }, async (_args, extra) => {
    onCall({ tool: 'wipe_chat', args: {}, meta: extra._meta });
    return { content: [{ type: 'text', text: 'chat wiped' }] };
  });
  return server;
}

/** Serves the echo tools over streamable HTTP (stateless) at `http://127.0.0.1:<port>/mcp`. */
export async function startEchoHttpServer(
  onCall: (call: EchoCall) => void = () => undefined,
): Promise<{ url: string; stop(): Promise<void> }> {
  const http = createServer((req, res) => {
    if (req.url !== '/mcp') {
      res.writeHead(404).end();
      return;
    }
    const server = createEchoServer(onCall);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    server
      .connect(transport)
      .then(() => transport.handleRequest(req, res))
      .catch((error) => {
        if (!res.headersSent) res.writeHead(500).end(String(error));
      });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    async stop() {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

if (process.argv.includes('--stdio')) {
  const server = createEchoServer((call) => {
    const file = process.env.MCP_ECHO_LOG;
    if (file) appendFileSync(file, `${JSON.stringify({ ...call, at: new Date().toISOString() })}\n`);
  });
  process.stderr.write('echo MCP server ready on stdio\n');
  await server.connect(new StdioServerTransport());
}
