/**
 * Query-analyzer throughput: ~100k mixed chat messages (commands, questions, mentions, greetings, spam,
 * links, emote floods, long text) through the deterministic analyzer. Prints messages/s and latency
 * percentiles in microseconds. Not a timed test; `npm run bench` prints the JSON.
 */
import { createAnalyzer, type AnalyzerInput } from '../src/services/query-analyzer/analyze.js';
import { round } from './stats.js';

const SAMPLES: AnalyzerInput[] = [
  { text: '!ping', role: 'viewer' },
  { text: '!so @somefriend they are great', role: 'moderator' },
  { text: 'hey @bitbrat what game is this?', role: 'viewer' },
  { text: 'what time does the stream end', role: 'subscriber' },
  { text: 'hello everyone, happy friday!', role: 'viewer' },
  { text: 'I love this stream, that play was awesome', role: 'vip' },
  { text: 'this is boring and the audio sucks', role: 'viewer' },
  { text: 'WHY IS NOBODY TALKING IN CHAT RIGHT NOW', role: 'viewer' },
  { text: 'nooooooooooooooooooooooooooo', role: 'viewer' },
  { text: 'buy followers at cheap-viewers.xyz/deal now', role: 'viewer' },
  { text: 'clip https://clips.twitch.tv/SomeClipName-abc123', role: 'viewer' },
  {
    text: 'Kappa Kappa Kappa Kappa Kappa Kappa Kappa Kappa Kappa Kappa Kappa',
    role: 'viewer',
    emotes: '25:0-4,6-10,12-16,18-22,24-28,30-34,36-40,42-46,48-52,54-58,60-64',
  },
  { text: 'gg', role: 'viewer' },
  { text: 'lol', role: 'subscriber' },
  { text: 'The quick brown fox jumps over the lazy dog. '.repeat(9), role: 'viewer' },
  { text: 'is it true that the next game is going to be Elden Ring or something else entirely', role: 'viewer' },
];

/** Nearest rank on an already sorted sample. */
const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

/** Runs the analyzer benchmark and returns one JSON-able result line. */
export async function benchAnalyzer(options: { messages?: number } = {}): Promise<Record<string, unknown>> {
  const count = options.messages ?? 100_000;
  const analyze = createAnalyzer({
    botName: 'bitbrat',
    linkAllowlist: ['twitch.tv', 'youtube.com'],
    blocklist: ['buy followers', 'scamword'],
  });
  // Vary each message a little so nothing is trivially cached by the engine.
  const inputs = Array.from({ length: count }, (_, i) => {
    const sample = SAMPLES[i % SAMPLES.length]!;
    return { ...sample, text: i % 3 === 0 ? `${sample.text} ${i % 97}` : sample.text };
  });
  for (let i = 0; i < 5_000; i += 1) analyze(inputs[i % inputs.length]!); // warm-up

  const latencies = new Float64Array(count);
  let spam = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i += 1) {
    const t0 = process.hrtime.bigint();
    if (analyze(inputs[i]!).spam) spam += 1;
    latencies[i] = Number(process.hrtime.bigint() - t0) / 1_000;
  }
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  latencies.sort();
  return {
    bench: 'analyzer',
    messages: count,
    elapsedMs: round(elapsedMs),
    messagesPerSec: Math.round(count / (elapsedMs / 1000)),
    p50Us: round(percentile(latencies, 50)),
    p99Us: round(percentile(latencies, 99)),
    maxUs: round(latencies[latencies.length - 1]!),
    spamShare: round(spam / count, 3),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(JSON.stringify(await benchAnalyzer()) + '\n');
}
