/**
 * A fake OpenTelemetry collector: an OTLP/HTTP receiver on loopback that accepts `POST /v1/traces` as
 * protobuf (`application/x-protobuf`, the exporters' default) and as JSON (`application/json`), gzip or
 * not, and keeps every span it was sent. The protobuf is decoded by hand from the OTLP field numbers
 * (opentelemetry-proto: collector/trace/v1, trace/v1, common/v1, resource/v1), so the real exporter's
 * bytes are what the tests read.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export type AttributeValue = string | number | boolean | AttributeValue[] | { [key: string]: AttributeValue } | null;

/** One received span, the same whichever encoding it came in. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, AttributeValue>;
  /** 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
  /** The span's events, e.g. `exception` with `exception.type`, `exception.message`, `exception.stacktrace`. */
  events: Array<{ name: string; attributes: Record<string, AttributeValue> }>;
  resource: Record<string, AttributeValue>;
  /** How the request carrying it was encoded. */
  encoding: 'protobuf' | 'json';
}

export interface FakeOtlpCollector {
  /** The base URL, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string;
  readonly spans: readonly ReceivedSpan[];
  /** Export requests received, by encoding. */
  readonly requests: { protobuf: number; json: number };
  /** Resolves once `predicate` holds for the spans received (checked on every export); rejects after `timeoutMs`. */
  waitFor(predicate: (spans: readonly ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<readonly ReceivedSpan[]>;
  close(): Promise<void>;
}

// ---- Minimal protobuf reader ----------------------------------------------------------------------

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  get done() {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const byte = this.buf[this.pos++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new Error('varint too long');
    }
  }
  bytes(): Buffer {
    const length = Number(this.varint());
    if (this.pos + length > this.buf.length) throw new Error('truncated length-delimited field');
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }
  fixed64(): Buffer {
    if (this.pos + 8 > this.buf.length) throw new Error('truncated fixed64');
    const out = this.buf.subarray(this.pos, this.pos + 8);
    this.pos += 8;
    return out;
  }
  /** Each field as (number, wire type, value reader). */
  *fields(): Generator<{ field: number; wire: number }> {
    while (!this.done) {
      const tag = Number(this.varint());
      yield { field: tag >>> 3, wire: tag & 7 };
    }
  }
  skip(wire: number) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function decodeAnyValue(buf: Buffer): AttributeValue {
  const r = new Reader(buf);
  let value: AttributeValue = null;
  for (const { field, wire } of r.fields()) {
    if (field === 1 && wire === 2) value = r.bytes().toString('utf8');
    else if (field === 2 && wire === 0) value = r.varint() !== 0n;
    else if (field === 3 && wire === 0) value = Number(BigInt.asIntN(64, r.varint()));
    else if (field === 4 && wire === 1) value = r.fixed64().readDoubleLE(0);
    else if (field === 5 && wire === 2) {
      const list = new Reader(r.bytes());
      const items: AttributeValue[] = [];
      for (const item of list.fields()) {
        if (item.field === 1 && item.wire === 2) items.push(decodeAnyValue(list.bytes()));
        else list.skip(item.wire);
      }
      value = items;
    } else if (field === 6 && wire === 2) value = decodeKeyValues(r.bytes());
    else if (field === 7 && wire === 2) value = r.bytes().toString('hex');
    else r.skip(wire);
  }
  return value;
}

function decodeKeyValue(buf: Buffer): [string, AttributeValue] {
  const r = new Reader(buf);
  let key = '';
  let value: AttributeValue = null;
  for (const { field, wire } of r.fields()) {
    if (field === 1 && wire === 2) key = r.bytes().toString('utf8');
    else if (field === 2 && wire === 2) value = decodeAnyValue(r.bytes());
    else r.skip(wire);
  }
  return [key, value];
}

/** A KeyValueList message (field 1: repeated KeyValue). */
function decodeKeyValues(buf: Buffer): Record<string, AttributeValue> {
  const r = new Reader(buf);
  const out: Record<string, AttributeValue> = {};
  for (const { field, wire } of r.fields()) {
    if (field === 1 && wire === 2) {
      const [key, value] = decodeKeyValue(r.bytes());
      out[key] = value;
    } else r.skip(wire);
  }
  return out;
}

function decodeSpan(buf: Buffer, resource: Record<string, AttributeValue>): ReceivedSpan {
  const r = new Reader(buf);
  const span: ReceivedSpan = {
    traceId: '',
    spanId: '',
    parentSpanId: '',
    name: '',
    kind: 0,
    attributes: {},
    status: { code: 0, message: '' },
    events: [],
    resource,
    encoding: 'protobuf',
  };
  for (const { field, wire } of r.fields()) {
    if (field === 1 && wire === 2) span.traceId = r.bytes().toString('hex');
    else if (field === 2 && wire === 2) span.spanId = r.bytes().toString('hex');
    else if (field === 4 && wire === 2) span.parentSpanId = r.bytes().toString('hex');
    else if (field === 5 && wire === 2) span.name = r.bytes().toString('utf8');
    else if (field === 6 && wire === 0) span.kind = Number(r.varint());
    else if (field === 9 && wire === 2) {
      const [key, value] = decodeKeyValue(r.bytes());
      span.attributes[key] = value;
    } else if (field === 11 && wire === 2) {
      const event = new Reader(r.bytes());
      const decoded: ReceivedSpan['events'][number] = { name: '', attributes: {} };
      for (const item of event.fields()) {
        if (item.field === 2 && item.wire === 2) decoded.name = event.bytes().toString('utf8');
        else if (item.field === 3 && item.wire === 2) {
          const [key, value] = decodeKeyValue(event.bytes());
          decoded.attributes[key] = value;
        } else event.skip(item.wire);
      }
      span.events.push(decoded);
    } else if (field === 15 && wire === 2) {
      const status = new Reader(r.bytes());
      for (const item of status.fields()) {
        if (item.field === 2 && item.wire === 2) span.status.message = status.bytes().toString('utf8');
        else if (item.field === 3 && item.wire === 0) span.status.code = Number(status.varint());
        else status.skip(item.wire);
      }
    } else r.skip(wire);
  }
  return span;
}

/** ExportTraceServiceRequest → spans. */
export function decodeTracesProtobuf(buf: Buffer): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  const request = new Reader(buf);
  for (const { field, wire } of request.fields()) {
    if (field !== 1 || wire !== 2) {
      request.skip(wire);
      continue;
    }
    const resourceSpans = new Reader(request.bytes());
    let resource: Record<string, AttributeValue> = {};
    const scopeBuffers: Buffer[] = [];
    for (const item of resourceSpans.fields()) {
      if (item.field === 1 && item.wire === 2) resource = decodeKeyValues(resourceSpans.bytes());
      else if (item.field === 2 && item.wire === 2) scopeBuffers.push(resourceSpans.bytes());
      else resourceSpans.skip(item.wire);
    }
    for (const scopeBuffer of scopeBuffers) {
      const scope = new Reader(scopeBuffer);
      for (const item of scope.fields()) {
        if (item.field === 2 && item.wire === 2) spans.push(decodeSpan(scope.bytes(), resource));
        else scope.skip(item.wire);
      }
    }
  }
  return spans;
}

// ---- OTLP/JSON ----------------------------------------------------------------------------------

type JsonAnyValue = {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: JsonKeyValue[] };
  bytesValue?: string;
};
type JsonKeyValue = { key: string; value?: JsonAnyValue };

function jsonValue(value: JsonAnyValue | undefined): AttributeValue {
  if (!value) return null;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.arrayValue) return (value.arrayValue.values ?? []).map(jsonValue);
  if (value.kvlistValue) return jsonAttributes(value.kvlistValue.values);
  if (value.bytesValue !== undefined) return Buffer.from(value.bytesValue, 'base64').toString('hex');
  return null;
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const entry of list ?? []) out[entry.key] = jsonValue(entry.value);
  return out;
}

/** OTLP/JSON ids are hex strings (the spec's exception to proto3 JSON's base64 for bytes). */
export function decodeTracesJson(body: unknown): ReceivedSpan[] {
  const request = body as {
    resourceSpans?: Array<{ resource?: { attributes?: JsonKeyValue[] }; scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }>;
  };
  if (!request || typeof request !== 'object' || !Array.isArray(request.resourceSpans)) throw new Error('resourceSpans is missing');
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of request.resourceSpans) {
    const resource = jsonAttributes(resourceSpans.resource?.attributes);
    for (const scope of resourceSpans.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        const status = (span.status ?? {}) as { code?: number; message?: string };
        spans.push({
          traceId: String(span.traceId ?? ''),
          spanId: String(span.spanId ?? ''),
          parentSpanId: String(span.parentSpanId ?? ''),
          name: String(span.name ?? ''),
          kind: Number(span.kind ?? 0),
          attributes: jsonAttributes(span.attributes as JsonKeyValue[] | undefined),
          status: { code: Number(status.code ?? 0), message: String(status.message ?? '') },
          events: ((span.events ?? []) as Array<{ name?: string; attributes?: JsonKeyValue[] }>).map((event) => ({
            name: String(event.name ?? ''),
            attributes: jsonAttributes(event.attributes),
          })),
          resource,
          encoding: 'json',
        });
      }
    }
  }
  return spans;
}

// ---- The server ---------------------------------------------------------------------------------

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Starts the fake collector on a free loopback port. */
export async function startFakeOtlpCollector(): Promise<FakeOtlpCollector> {
  const spans: ReceivedSpan[] = [];
  const requests = { protobuf: 0, json: 0 };
  const waiters = new Set<() => void>();
  const server: Server = createServer((req, res) => {
    const reply = (status: number, type: string, body: string | Buffer) => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== '/v1/traces') {
      reply(404, 'text/plain', `no such endpoint: ${req.method} ${req.url} (this collector takes POST /v1/traces)`);
      return;
    }
    readBody(req).then(
      (raw) => {
        try {
          const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
          const type = String(req.headers['content-type'] ?? '')
            .split(';')[0]!
            .trim();
          let received: ReceivedSpan[];
          if (type === 'application/x-protobuf') {
            received = decodeTracesProtobuf(body);
            requests.protobuf += 1;
          } else if (type === 'application/json') {
            received = decodeTracesJson(JSON.parse(body.toString('utf8')));
            requests.json += 1;
          } else {
            reply(415, 'text/plain', `unsupported content-type "${type}": send application/x-protobuf or application/json`);
            return;
          }
          spans.push(...received);
          // An empty ExportTraceServiceResponse: no partial success.
          if (type === 'application/json') reply(200, 'application/json', '{}');
          else reply(200, 'application/x-protobuf', Buffer.alloc(0));
          for (const wake of [...waiters]) wake();
        } catch (error) {
          reply(400, 'text/plain', `malformed export request: ${(error as Error).message}`);
        }
      },
      () => reply(400, 'text/plain', 'could not read the request body'),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    requests,
    waitFor(predicate, timeoutMs = 20_000) {
      if (predicate(spans)) return Promise.resolve(spans);
      return new Promise((resolve, reject) => {
        const wake = () => {
          if (!predicate(spans)) return;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(spans);
        };
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(
            new Error(
              `the collector did not receive the expected spans within ${timeoutMs} ms; got ${spans.length}: ${spans.map((span) => span.name).join(', ')}`,
            ),
          );
        }, timeoutMs);
        waiters.add(wake);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
