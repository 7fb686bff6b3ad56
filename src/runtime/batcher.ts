/**
 * Groups concurrent calls into one batch call: each `add` resolves with its own item's result once the
 * batch it landed in has been written. A batch is flushed when it reaches `maxSize` or `maxDelayMs`
 * after its first item. `write` may answer an Error for one item (that caller alone is rejected); a
 * batch that throws rejects every caller in it, so each message is settled on its
 * own terms (held while the store is down, dead-lettered when the record itself is bad).
 */
export interface Batcher<T, R> {
  add(item: T): Promise<R>;
  /** Flush what is queued now. */
  flush(): Promise<void>;
}

export function createBatcher<T, R>(
  write: (items: T[]) => Promise<Array<R | Error>>,
  options: { maxSize?: number; maxDelayMs?: number } = {},
): Batcher<T, R> {
  const maxSize = options.maxSize ?? 200;
  const maxDelayMs = options.maxDelayMs ?? 5;
  let queue: Array<{ item: T; resolve: (value: R) => void; reject: (error: unknown) => void }> = [];
  let timer: NodeJS.Timeout | undefined;

  const flush = async () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (queue.length === 0) return;
    const batch = queue;
    queue = [];
    try {
      const results = await write(batch.map((entry) => entry.item));
      batch.forEach((entry, index) => {
        const result = results[index];
        if (result instanceof Error) entry.reject(result);
        else entry.resolve(result as R);
      });
    } catch (error) {
      for (const entry of batch) entry.reject(error);
    }
  };

  return {
    add(item) {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        if (queue.length >= maxSize) void flush();
        else timer ??= setTimeout(() => void flush(), maxDelayMs);
      });
    },
    flush,
  };
}
