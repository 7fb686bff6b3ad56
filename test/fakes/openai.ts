/**
 * A fake OpenAI-compatible server on loopback that speaks the real wire protocol, so the real
 * `@ai-sdk/openai` provider is what tests exercise. It serves both APIs the provider uses:
 * `POST /v1/chat/completions` (`openai.chat(model)`, also what Ollama/vLLM expose) and
 * `POST /v1/responses` (`openai(model)` / `openai.responses(model)`), streaming (SSE) and not.
 *
 * Each test scripts the "model" with `reply(fn)` (every request) or `replyOnce(...)` (a queue consumed
 * first). Every request is recorded in a normalized shape (system text, messages, offered tools, tool
 * results) for assertions.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenLoopback, readBody, sendJson as sendJsonBody } from './http.js';

export interface FakeToolCall {
  name: string;
  args?: Record<string, unknown>;
  /** Default: a generated `call_…` id. */
  id?: string;
}

/** What the scripted model answers to one request. Every variant may wait `delayMs` first. */
export type FakeReply =
  | { text: string; toolCalls?: undefined; usage?: FakeUsage; delayMs?: number }
  | { toolCalls: FakeToolCall[]; text?: string; usage?: FakeUsage; delayMs?: number }
  | { status: number; message?: string; delayMs?: number }
  /** Close the socket without answering (a network failure as the client sees it). */
  | { drop: true; delayMs?: number }
  /** Only wait, then answer with the default text. */
  | { delayMs: number };

export interface FakeUsage {
  input?: number;
  output?: number;
}

export interface RecordedMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  text: string;
  toolCalls?: Array<{ id: string; name: string; args: string }>;
  toolCallId?: string;
}

/** One request as the fake saw it. */
export interface RecordedRequest {
  /** `gemini` for the fake Vertex endpoint (test/fakes/vertex.ts). */
  api: 'chat' | 'responses' | 'gemini';
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  model: string;
  stream: boolean;
  /** Text of every system/developer message, in order. */
  system: string[];
  messages: RecordedMessage[];
  /** Names of the tools offered to the model. */
  tools: string[];
  /** The JSON schema of each offered tool's parameters. */
  toolSchemas: Record<string, unknown>;
  /** Tool outputs sent back to the model (tool messages / function_call_output items). */
  toolResults: Array<{ callId: string; output: string }>;
  /** 1-based position among all requests. */
  index: number;
}

export type FakeScript = (request: RecordedRequest) => FakeReply | Promise<FakeReply>;

export interface FakeOpenAI {
  /** `http://127.0.0.1:<port>/v1`, the provider's `baseURL`. */
  readonly baseURL: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  /** Total tokens reported in usage across all answered requests. */
  readonly tokensServed: number;
  /** Answer every request with `script` (after any queued one-shot replies). */
  reply(script: FakeScript | FakeReply): void;
  /** Queue replies used once each, in order, before the standing script. */
  replyOnce(...replies: Array<FakeScript | FakeReply>): void;
  /** Forget recorded requests and queued replies; the standing script returns to the default. */
  reset(): void;
  stop(): Promise<void>;
}

export const DEFAULT_FAKE_TEXT = 'Hello from the fake model.';

/** Roughly one token per four characters, like OpenAI's rule of thumb; at least 1. */
export function countTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) =>
        typeof part === 'string'
          ? part
          : typeof part?.text === 'string'
            ? part.text
            : typeof part?.refusal === 'string'
              ? part.refusal
              : '',
      )
      .join('');
  }
  return '';
}

function normalizeChat(body: any): Pick<RecordedRequest, 'system' | 'messages' | 'tools' | 'toolSchemas' | 'toolResults'> {
  const messages: RecordedMessage[] = [];
  const toolResults: RecordedRequest['toolResults'] = [];
  for (const message of body.messages ?? []) {
    const recorded: RecordedMessage = { role: message.role, text: contentText(message.content) };
    if (Array.isArray(message.tool_calls)) {
      recorded.toolCalls = message.tool_calls.map((call: any) => ({
        id: call.id,
        name: call.function?.name,
        args: call.function?.arguments ?? '',
      }));
    }
    if (message.role === 'tool') {
      recorded.toolCallId = message.tool_call_id;
      toolResults.push({ callId: message.tool_call_id, output: recorded.text });
    }
    messages.push(recorded);
  }
  const tools = (body.tools ?? []).map((entry: any) => entry.function?.name).filter(Boolean) as string[];
  const toolSchemas = Object.fromEntries((body.tools ?? []).map((entry: any) => [entry.function?.name, entry.function?.parameters]));
  return {
    system: messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => m.text),
    messages,
    tools,
    toolSchemas,
    toolResults,
  };
}

function normalizeResponses(body: any): Pick<RecordedRequest, 'system' | 'messages' | 'tools' | 'toolSchemas' | 'toolResults'> {
  const messages: RecordedMessage[] = [];
  const toolResults: RecordedRequest['toolResults'] = [];
  if (typeof body.instructions === 'string') messages.push({ role: 'system', text: body.instructions });
  const input = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : (body.input ?? []);
  for (const item of input) {
    if (item.type === 'function_call') {
      const last = messages.at(-1);
      const call = { id: item.call_id, name: item.name, args: item.arguments ?? '' };
      if (last?.role === 'assistant') (last.toolCalls ??= []).push(call);
      else messages.push({ role: 'assistant', text: '', toolCalls: [call] });
    } else if (item.type === 'function_call_output') {
      const output = typeof item.output === 'string' ? item.output : JSON.stringify(item.output);
      messages.push({ role: 'tool', text: output, toolCallId: item.call_id });
      toolResults.push({ callId: item.call_id, output });
    } else if (item.role) {
      messages.push({ role: item.role, text: contentText(item.content) });
    }
  }
  const functions = (body.tools ?? []).filter((entry: any) => entry.type === 'function');
  return {
    system: messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => m.text),
    messages,
    tools: functions.map((entry: any) => entry.name),
    toolSchemas: Object.fromEntries(functions.map((entry: any) => [entry.name, entry.parameters])),
    toolResults,
  };
}

/** JSON with a request id, as OpenAI answers. */
function sendJson(res: ServerResponse, status: number, value: unknown) {
  sendJsonBody(res, status, value, { 'x-request-id': `req_${Math.random().toString(36).slice(2)}` });
}

function startSse(res: ServerResponse) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
}

/** Splits text into a few pieces so streaming clients see several deltas. */
function pieces(text: string): string[] {
  if (text.length <= 8) return text ? [text] : [];
  const size = Math.ceil(text.length / 3);
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/** An answer with content: text and/or tool calls. */
export type FakeAnswer = { text?: string; toolCalls?: FakeToolCall[]; usage?: FakeUsage };

/** The scripting every fake model shares: standing and one-shot replies, recorded requests, token count. */
export interface ScriptedModel {
  readonly requests: RecordedRequest[];
  /** Adds to `tokensServed`. */
  count(tokens: number): void;
  /**
   * Records `request`, runs the next script and carries out delays, drops and error statuses (through
   * `sendError`); resolves to the answer to send, or undefined when the response is already done.
   */
  next(
    request: RecordedRequest,
    req: IncomingMessage,
    res: ServerResponse,
    sendError: (status: number, message: string) => void,
  ): Promise<FakeAnswer | undefined>;
  /** The test-facing controls of a fake. */
  readonly controls: Pick<FakeOpenAI, 'requests' | 'tokensServed' | 'reply' | 'replyOnce' | 'reset'>;
}

export function createScriptedModel(defaultScript: FakeScript | FakeReply = { text: DEFAULT_FAKE_TEXT }): ScriptedModel {
  let standing: FakeScript | FakeReply = defaultScript;
  const queue: Array<FakeScript | FakeReply> = [];
  const requests: RecordedRequest[] = [];
  let tokensServed = 0;
  return {
    requests,
    count(tokens) {
      tokensServed += tokens;
    },
    async next(request, req, res, sendError) {
      requests.push(request);
      const script = queue.shift() ?? standing;
      let reply: FakeReply;
      try {
        reply = typeof script === 'function' ? await script(request) : script;
      } catch (error) {
        sendError(500, `fake script threw: ${(error as Error).message}`);
        return undefined;
      }
      if (reply.delayMs) {
        const aborted = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), reply.delayMs);
          res.on('close', () => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        if (aborted || res.destroyed) return undefined;
      }
      if ('drop' in reply) {
        req.socket.destroy();
        return undefined;
      }
      if ('status' in reply) {
        sendError(reply.status, reply.message ?? `fake error ${reply.status}`);
        return undefined;
      }
      return 'text' in reply || 'toolCalls' in reply ? reply : { text: DEFAULT_FAKE_TEXT };
    },
    controls: {
      requests,
      get tokensServed() {
        return tokensServed;
      },
      reply(script) {
        standing = script;
      },
      replyOnce(...replies) {
        queue.push(...replies);
      },
      reset() {
        requests.length = 0;
        queue.length = 0;
        standing = defaultScript;
      },
    },
  };
}

/** Starts the fake on a free loopback port. */
export async function startFakeOpenAI(options: { defaultScript?: FakeScript | FakeReply } = {}): Promise<FakeOpenAI> {
  const model = createScriptedModel(options.defaultScript);
  const { requests } = model;
  let ids = 0;
  const nextId = (prefix: string) => `${prefix}_${(++ids).toString(36)}${Math.random().toString(36).slice(2, 8)}`;

  const usageFor = (request: RecordedRequest, reply: { text?: string; toolCalls?: FakeToolCall[]; usage?: FakeUsage }) => {
    const promptText =
      request.messages.map((m) => m.text + (m.toolCalls ? JSON.stringify(m.toolCalls) : '')).join('\n') + request.tools.join(',');
    const input = reply.usage?.input ?? countTokens(promptText);
    const output = reply.usage?.output ?? countTokens((reply.text ?? '') + (reply.toolCalls ? JSON.stringify(reply.toolCalls) : ''));
    model.count(input + output);
    return { input, output };
  };

  const answerChat = (
    res: ServerResponse,
    request: RecordedRequest,
    reply: { text?: string; toolCalls?: FakeToolCall[]; usage?: FakeUsage },
  ) => {
    const id = nextId('chatcmpl');
    const created = Math.floor(Date.now() / 1000);
    const usage = usageFor(request, reply);
    const toolCalls = (reply.toolCalls ?? []).map((call) => ({
      id: call.id ?? nextId('call'),
      type: 'function' as const,
      function: { name: call.name, arguments: JSON.stringify(call.args ?? {}) },
    }));
    const finishReason = toolCalls.length > 0 ? 'tool_calls' : 'stop';
    const usageJson = { prompt_tokens: usage.input, completion_tokens: usage.output, total_tokens: usage.input + usage.output };
    if (!request.stream) {
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model: request.model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: reply.text ?? null, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) },
            finish_reason: finishReason,
          },
        ],
        usage: usageJson,
      });
      return;
    }
    startSse(res);
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: request.model, choices, ...extra })}\n\n`);
    chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
    for (const piece of pieces(reply.text ?? '')) chunk([{ index: 0, delta: { content: piece }, finish_reason: null }]);
    toolCalls.forEach((call, index) => {
      chunk([
        {
          index: 0,
          delta: { tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] },
          finish_reason: null,
        },
      ]);
      for (const piece of pieces(call.function.arguments))
        chunk([{ index: 0, delta: { tool_calls: [{ index, function: { arguments: piece } }] }, finish_reason: null }]);
    });
    chunk([{ index: 0, delta: {}, finish_reason: finishReason }]);
    if (request.body.stream_options?.include_usage) chunk([], { usage: usageJson });
    res.write('data: [DONE]\n\n');
    res.end();
  };

  const answerResponses = (
    res: ServerResponse,
    request: RecordedRequest,
    reply: { text?: string; toolCalls?: FakeToolCall[]; usage?: FakeUsage },
  ) => {
    const id = nextId('resp');
    const createdAt = Math.floor(Date.now() / 1000);
    const usage = usageFor(request, reply);
    const usageJson = {
      input_tokens: usage.input,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: usage.output,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: usage.input + usage.output,
    };
    const output: any[] = [];
    if (reply.text !== undefined && reply.text !== '') {
      output.push({
        type: 'message',
        id: nextId('msg'),
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: reply.text, annotations: [] }],
      });
    }
    for (const call of reply.toolCalls ?? []) {
      output.push({
        type: 'function_call',
        id: nextId('fc'),
        call_id: call.id ?? nextId('call'),
        name: call.name,
        arguments: JSON.stringify(call.args ?? {}),
        status: 'completed',
      });
    }
    const response = {
      id,
      object: 'response',
      created_at: createdAt,
      model: request.model,
      status: 'completed',
      error: null,
      incomplete_details: null,
      output,
      usage: usageJson,
    };
    if (!request.stream) {
      sendJson(res, 200, response);
      return;
    }
    startSse(res);
    let sequence = 0;
    const event = (value: Record<string, unknown>) =>
      res.write(`event: ${String(value.type)}\ndata: ${JSON.stringify({ ...value, sequence_number: sequence++ })}\n\n`);
    event({ type: 'response.created', response: { ...response, status: 'in_progress', output: [], usage: null } });
    output.forEach((item, outputIndex) => {
      if (item.type === 'message') {
        event({ type: 'response.output_item.added', output_index: outputIndex, item: { ...item, status: 'in_progress', content: [] } });
        for (const piece of pieces(item.content[0].text))
          event({ type: 'response.output_text.delta', item_id: item.id, output_index: outputIndex, content_index: 0, delta: piece });
        event({ type: 'response.output_item.done', output_index: outputIndex, item });
      } else {
        event({ type: 'response.output_item.added', output_index: outputIndex, item: { ...item, status: 'in_progress', arguments: '' } });
        for (const piece of pieces(item.arguments))
          event({ type: 'response.function_call_arguments.delta', item_id: item.id, output_index: outputIndex, delta: piece });
        event({ type: 'response.function_call_arguments.done', item_id: item.id, output_index: outputIndex, arguments: item.arguments });
        event({ type: 'response.output_item.done', output_index: outputIndex, item });
      }
    });
    event({ type: 'response.completed', response });
    res.end();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const api = path.endsWith('/chat/completions') ? 'chat' : path.endsWith('/responses') ? 'responses' : undefined;
    if (req.method !== 'POST' || !api) {
      sendJson(res, 404, { error: { message: `no route for ${req.method} ${path}`, type: 'invalid_request_error', code: 'not_found' } });
      return;
    }
    let body: any;
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      sendJson(res, 400, { error: { message: 'request body is not JSON', type: 'invalid_request_error', code: null } });
      return;
    }
    const normalized = api === 'chat' ? normalizeChat(body) : normalizeResponses(body);
    const request: RecordedRequest = {
      api,
      path,
      headers: req.headers,
      body,
      model: String(body.model ?? ''),
      stream: body.stream === true,
      ...normalized,
      index: requests.length + 1,
    };
    const answer = await model.next(request, req, res, (status, message) => {
      const type = status >= 500 ? 'server_error' : status === 429 ? 'rate_limit_error' : 'invalid_request_error';
      sendJson(res, status, { error: { message, type, param: null, code: null } });
    });
    if (!answer) return;
    if (api === 'chat') answerChat(res, request, answer);
    else answerResponses(res, request, answer);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: String(error), type: 'server_error', code: null } });
      else res.end();
    });
  });
  const { port, stop } = await listenLoopback(server);

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    port,
    requests: model.controls.requests,
    get tokensServed() {
      return model.controls.tokensServed;
    },
    reply: model.controls.reply,
    replyOnce: model.controls.replyOnce,
    reset: model.controls.reset,
    stop,
  };
}
