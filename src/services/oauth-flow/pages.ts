import type { FastifyReply } from 'fastify';
import type { OAuthToken } from '../../store/index.js';

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!);

/** The OAuth pages run no script and load nothing: a CSP that allows nothing. */
export const OAUTH_PAGE_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** A small HTML page for the operator's browser (never cached, no script, not framed). */
export function page(reply: FastifyReply, status: number, title: string, lines: string[]): FastifyReply {
  const body = lines.map((line) => `<p>${escapeHtml(line)}</p>`).join('\n');
  return reply
    .status(status)
    .header('cache-control', 'no-store')
    .header('content-security-policy', OAUTH_PAGE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .type('text/html; charset=utf-8')
    .send(
      `<!doctype html>\n<html><head><meta charset="utf-8"><title>BitBrat – ${escapeHtml(title)}</title></head>\n<body><h1>${escapeHtml(title)}</h1>\n${body}\n</body></html>\n`,
    );
}

/** What /oauth/twitch/status says about a stored token (never its value). */
export function tokenStatus(token: OAuthToken | undefined) {
  if (!token) return { connected: false };
  return {
    connected: true,
    login: token.login ?? null,
    userId: token.userId ?? null,
    scopes: token.scopes,
    expiresAt: token.expiresAt ?? null,
    obtainedAt: token.obtainedAt,
    expired: token.expiresAt ? Date.parse(token.expiresAt) <= Date.now() : false,
    refreshable: Boolean(token.refreshToken),
  };
}
