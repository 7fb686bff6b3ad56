import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenLoopback, sendJson as sendJsonBody } from './http.js';

/**
 * A fake Google Secret Manager REST API plus the GCE metadata server's token endpoint, on one loopback
 * port. It speaks the real wire shapes:
 * - `GET /computeMetadata/v1/instance/service-accounts/default/token` (needs `Metadata-Flavor: Google`)
 *   → `{ access_token, expires_in, token_type }`;
 * - `GET /v1/projects/{project}/secrets/{secret}/versions/latest:access` (needs `Authorization: Bearer`)
 *   → `{ name, payload: { data: base64 } }`, or Google's error body `{ error: { code, message, status } }`.
 */
export interface FakeSecretManager {
  /** `http://127.0.0.1:<port>`: use as SECRET_MANAGER_ENDPOINT and GCE_METADATA_HOST. */
  readonly url: string;
  readonly port: number;
  setSecret(project: string, name: string, value: string): void;
  /** Answer 403 PERMISSION_DENIED for this secret (no secretAccessor grant). */
  deny(project: string, name: string): void;
  /** The next `count` access requests answer `status` (e.g. 500, 503, 429). */
  failNext(status: number, count?: number): void;
  /** Issue a new token; the old one is rejected with 401 from now on. */
  rotateToken(): void;
  /** The token the metadata endpoint hands out now. */
  currentToken(): string;
  /** Every request, in order (method, path, and whether it carried the expected auth). */
  readonly requests: Array<{ method: string; path: string; authorized: boolean }>;
  stop(): Promise<void>;
}

const ACCESS_PATH = /^\/v1\/projects\/([^/]+)\/secrets\/([^/]+)\/versions\/latest:access$/;
const TOKEN_PATH = '/computeMetadata/v1/instance/service-accounts/default/token';

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendJsonBody(res, status, body, { 'content-type': 'application/json; charset=utf-8' });
}

function googleError(res: ServerResponse, code: number, status: string, message: string): void {
  sendJson(res, code, { error: { code, message, status } });
}

export async function startFakeSecretManager(): Promise<FakeSecretManager> {
  const secrets = new Map<string, string>();
  const denied = new Set<string>();
  const requests: FakeSecretManager['requests'] = [];
  let failures: { status: number; count: number } | undefined;
  let generation = 1;
  const tokenValue = () => `fake-token-${generation}`;

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const pathname = decodeURIComponent(url.pathname);
    if (req.method === 'GET' && pathname === TOKEN_PATH) {
      const authorized = req.headers['metadata-flavor'] === 'Google';
      requests.push({ method: 'GET', path: pathname, authorized });
      if (!authorized) return googleError(res, 403, 'PERMISSION_DENIED', 'Missing Metadata-Flavor:Google header.');
      return sendJson(res, 200, { access_token: tokenValue(), expires_in: 3599, token_type: 'Bearer' });
    }
    const match = ACCESS_PATH.exec(pathname);
    const authorized = req.headers.authorization === `Bearer ${tokenValue()}`;
    requests.push({ method: req.method ?? 'GET', path: pathname, authorized });
    if (req.method !== 'GET' || !match) return googleError(res, 404, 'NOT_FOUND', `no route ${req.method} ${pathname}`);
    if (!authorized) return googleError(res, 401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.');
    if (failures && failures.count > 0) {
      failures.count -= 1;
      const { status } = failures;
      return googleError(res, status, status === 429 ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE', 'injected failure');
    }
    const [, project, name] = match;
    const key = `${project}/${name}`;
    if (denied.has(key))
      return googleError(
        res,
        403,
        'PERMISSION_DENIED',
        `Permission 'secretmanager.versions.access' denied for resource 'projects/${project}/secrets/${name}/versions/latest'.`,
      );
    const value = secrets.get(key);
    if (value === undefined)
      return googleError(res, 404, 'NOT_FOUND', `Secret [projects/${project}/secrets/${name}] not found or has no versions.`);
    return sendJson(res, 200, {
      name: `projects/${project}/secrets/${name}/versions/1`,
      payload: { data: Buffer.from(value, 'utf8').toString('base64') },
    });
  };

  const server = createServer(handle);
  const { port, stop } = await listenLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    setSecret: (project, name, value) => void secrets.set(`${project}/${name}`, value),
    deny: (project, name) => void denied.add(`${project}/${name}`),
    failNext: (status, count = 1) => void (failures = { status, count }),
    rotateToken: () => void (generation += 1),
    currentToken: tokenValue,
    stop,
  };
}
