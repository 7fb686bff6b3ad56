/**
 * Where two values differ in shape: keys in another order, another prototype, or another leaf (compared
 * with Object.is). `undefined` when they are the same; otherwise the path and what differs there.
 */
export function sameShape(a: unknown, b: unknown, at = ''): string | undefined {
  if (typeof a !== typeof b) return `${at}: ${typeof a} vs ${typeof b}`;
  if (a === null || typeof a !== 'object') return Object.is(a, b) ? undefined : `${at}: ${String(a)} vs ${String(b)}`;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${at}: prototype`;
  const keysA = Reflect.ownKeys(a);
  const keysB = Reflect.ownKeys(b as object);
  if (keysA.length !== keysB.length || keysA.some((key, index) => key !== keysB[index]))
    return `${at}: keys ${keysA.map(String)} vs ${keysB.map(String)}`;
  for (const key of keysA) {
    const difference = sameShape(
      (a as Record<PropertyKey, unknown>)[key],
      (b as Record<PropertyKey, unknown>)[key],
      `${at}.${String(key)}`,
    );
    if (difference) return difference;
  }
  return undefined;
}
