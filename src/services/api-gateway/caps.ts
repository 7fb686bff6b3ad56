/**
 * Caps on long-lived connections (chat WebSockets, live-update streams): at most `max` open at once in
 * all, and at most `perKey` for one key (a token's label, or an anonymous viewer's address), so one
 * token cannot take the server's memory and every other client's reply latency with it.
 */
export interface ConnectionCaps {
  /** Takes a slot for `key`; returns its release (idempotent), or why there is none. */
  acquire(key: string): { ok: true; release: () => void } | { ok: false; reason: string };
  /** Open connections in all. */
  readonly open: number;
}

export function createConnectionCaps(limits: { max: number; perKey: number; what: string }): ConnectionCaps {
  const byKey = new Map<string, number>();
  let open = 0;
  return {
    acquire(key) {
      if (open >= limits.max) return { ok: false, reason: `the server holds its maximum of ${limits.max} ${limits.what}; try again later` };
      const mine = byKey.get(key) ?? 0;
      if (mine >= limits.perKey) return { ok: false, reason: `at most ${limits.perKey} ${limits.what} per token; close another one first` };
      byKey.set(key, mine + 1);
      open += 1;
      let released = false;
      return {
        ok: true,
        release() {
          if (released) return;
          released = true;
          open -= 1;
          const left = (byKey.get(key) ?? 1) - 1;
          if (left > 0) byKey.set(key, left);
          else byKey.delete(key);
        },
      };
    },
    get open() {
      return open;
    },
  };
}

/** The key a principal's connections are counted under. */
export function capKey(principal: { label: string; anonymous: boolean }, address: string): string {
  return principal.anonymous ? `anonymous@${address}` : principal.label;
}
