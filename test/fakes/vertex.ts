/**
 * A fake Vertex AI Gemini endpoint on loopback for the real `@ai-sdk/google-vertex` provider:
 * `POST …/models/<model>:generateContent` and `…:streamGenerateContent?alt=sse`, answering Gemini-format
 * JSON with `usageMetadata`. Point the provider at it with `baseURL` (VERTEX_BASE_URL), e.g.
 * `${fake.baseURL}` = `http://127.0.0.1:<port>/v1beta1/projects/<p>/locations/<l>/publishers/google`.
 *
 * Scripting and recording share the shapes of the fake OpenAI server (`FakeReply`, `RecordedRequest`
 * with `api: 'gemini'`), so a test can drive either provider with the same script.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenLoopback, readBody, sendJson as sendJsonBody } from './http.js';
import {
  countTokens,
  createScriptedModel,
  type FakeReply,
  type FakeScript,
  type FakeToolCall,
  type FakeUsage,
  type RecordedMessage,
  type RecordedRequest,
} from './openai.js';

export interface FakeVertex {
  /** Base URL for `createVertex({ baseURL })` (ends at `/publishers/google`). */
  readonly baseURL: string;
  readonly port: number;
  readonly project: string;
  readonly location: string;
  readonly requests: RecordedRequest[];
  readonly tokensServed: number;
  reply(script: FakeScript | FakeReply): void;
  replyOnce(...replies: Array<FakeScript | FakeReply>): void;
  reset(): void;
  stop(): Promise<void>;
}

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
};

function partsText(parts: any[] | undefined): string {
  return (parts ?? []).map((part) => (typeof part?.text === 'string' ? part.text : '')).join('');
}

function normalizeGemini(body: any): Pick<RecordedRequest, 'system' | 'messages' | 'tools' | 'toolSchemas' | 'toolResults'> {
  const messages: RecordedMessage[] = [];
  const toolResults: RecordedRequest['toolResults'] = [];
  const system = body.systemInstruction ? [partsText(body.systemInstruction.parts)] : [];
  for (const text of system) messages.push({ role: 'system', text });
  for (const content of body.contents ?? []) {
    const parts: any[] = content.parts ?? [];
    const calls = parts
      .filter((part) => part.functionCall)
      .map((part) => ({
        id: part.functionCall.id ?? part.functionCall.name,
        name: part.functionCall.name,
        args: JSON.stringify(part.functionCall.args ?? {}),
      }));
    const responses = parts.filter((part) => part.functionResponse);
    if (responses.length > 0) {
      for (const part of responses) {
        const content = part.functionResponse.response?.content ?? part.functionResponse.response ?? null;
        const output = typeof content === 'string' ? content : JSON.stringify(content);
        messages.push({ role: 'tool', text: output, toolCallId: part.functionResponse.id ?? part.functionResponse.name });
        toolResults.push({ callId: part.functionResponse.id ?? part.functionResponse.name, output });
      }
      continue;
    }
    messages.push({
      role: content.role === 'model' ? 'assistant' : 'user',
      text: partsText(parts),
      ...(calls.length ? { toolCalls: calls } : {}),
    });
  }
  const declarations = (body.tools ?? []).flatMap((tool: any) => tool.functionDeclarations ?? []);
  return {
    system,
    messages,
    tools: declarations.map((declaration: any) => declaration.name),
    toolSchemas: Object.fromEntries(declarations.map((declaration: any) => [declaration.name, declaration.parameters])),
    toolResults,
  };
}

function sendJson(res: ServerResponse, status: number, value: unknown) {
  sendJsonBody(res, status, value, { 'content-type': 'application/json; charset=UTF-8' });
}

/** Starts the fake Vertex endpoint on a free loopback port. */
export async function startFakeVertex(
  options: { project?: string; location?: string; defaultScript?: FakeScript | FakeReply } = {},
): Promise<FakeVertex> {
  const project = options.project ?? 'test-project';
  const location = options.location ?? 'us-central1';
  const model = createScriptedModel(options.defaultScript);
  const { requests } = model;

  const answer = (
    res: ServerResponse,
    request: RecordedRequest,
    reply: { text?: string; toolCalls?: FakeToolCall[]; usage?: FakeUsage },
  ) => {
    const parts: any[] = [];
    if (reply.text) parts.push({ text: reply.text });
    // Gemini 2.5+ signs its function calls; the SDK replays the signature on the next turn.
    for (const call of reply.toolCalls ?? [])
      parts.push({
        functionCall: { name: call.name, args: call.args ?? {} },
        thoughtSignature: Buffer.from(`sig:${call.name}`).toString('base64'),
      });
    const promptText = request.messages.map((m) => m.text).join('\n');
    const input = reply.usage?.input ?? countTokens(promptText);
    const output = reply.usage?.output ?? countTokens((reply.text ?? '') + (reply.toolCalls ? JSON.stringify(reply.toolCalls) : ''));
    model.count(input + output);
    const usageMetadata = {
      promptTokenCount: input,
      candidatesTokenCount: output,
      totalTokenCount: input + output,
      trafficType: 'ON_DEMAND',
    };
    const response = {
      candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP', avgLogprobs: -0.1 }],
      usageMetadata,
      modelVersion: request.model,
      createTime: new Date().toISOString(),
      responseId: `resp-${Math.random().toString(36).slice(2, 10)}`,
    };
    if (!request.stream) {
      sendJson(res, 200, response);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    // Gemini streams text first, then function calls and usage with the final chunk.
    if (reply.text)
      res.write(
        `data: ${JSON.stringify({ candidates: [{ content: { role: 'model', parts: [{ text: reply.text }] } }], modelVersion: request.model })}\r\n\r\n`,
      );
    const finalParts = parts.filter((part) => part.functionCall);
    res.write(
      `data: ${JSON.stringify({ candidates: [{ content: { role: 'model', parts: finalParts }, finishReason: 'STOP' }], usageMetadata, modelVersion: request.model })}\r\n\r\n`,
    );
    res.end();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const match = /\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(url.pathname);
    if (req.method !== 'POST' || !match) {
      sendJson(res, 404, { error: { code: 404, message: `no route for ${req.method} ${url.pathname}`, status: 'NOT_FOUND' } });
      return;
    }
    if (!/^Bearer \S+/.test(String(req.headers.authorization ?? '')) && !req.headers['x-goog-api-key']) {
      sendJson(res, 401, {
        error: { code: 401, message: 'Request is missing required authentication credential.', status: 'UNAUTHENTICATED' },
      });
      return;
    }
    let body: any;
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      sendJson(res, 400, { error: { code: 400, message: 'Invalid JSON payload received.', status: 'INVALID_ARGUMENT' } });
      return;
    }
    const request: RecordedRequest = {
      api: 'gemini',
      path: url.pathname,
      headers: req.headers,
      body,
      model: match[1]!,
      stream: match[2] === 'streamGenerateContent',
      ...normalizeGemini(body),
      index: requests.length + 1,
    };
    const reply = await model.next(request, req, res, (status, message) =>
      sendJson(res, status, { error: { code: status, message, status: STATUS_NAMES[status] ?? 'UNKNOWN' } }),
    );
    if (reply) answer(res, request, reply);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      if (!res.headersSent) sendJson(res, 500, { error: { code: 500, message: String(error), status: 'INTERNAL' } });
      else res.end();
    });
  });
  const { port, stop } = await listenLoopback(server);
  return {
    baseURL: `http://127.0.0.1:${port}/v1beta1/projects/${project}/locations/${location}/publishers/google`,
    port,
    project,
    location,
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
