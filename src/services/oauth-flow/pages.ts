import type { FastifyReply } from 'fastify';
import type { OAuthToken } from '../../store/index.js';

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!);

/** A small HTML page for the operator's browser (never cached). */
export function page(reply: FastifyReply, status: number, title: string, lines: string[]): FastifyReply {
  const body = lines.map((line) => `<p>${escapeHtml(line)}</p>`).join('\n');
  return reply
    .status(status)
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(`<!doctype html>\n<html><head><meta charset="utf-8"><title>BitBrat – ${escapeHtml(title)}</title></head>\n<body><h1>${escapeHtml(title)}</h1>\n${body}\n</body></html>\n`);
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
