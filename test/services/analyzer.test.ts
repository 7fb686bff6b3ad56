import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import { createEnvelope, createStep, Topic, type Envelope } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import { permissionsFor } from '../../src/services/auth/roles.js';
import { analysisAnnotations, countEmotes, createAnalyzer, parseCommand } from '../../src/services/query-analyzer/analyze.js';
import { createQueryAnalyzer, type IntentClassifier, type QueryAnalyzerOptions } from '../../src/services/query-analyzer/index.js';
import { collect, startTestHost } from '../support/harness.js';

const analyze = createAnalyzer({
  botName: 'BitBrat',
  linkAllowlist: ['twitch.tv', 'youtube.com'],
  blocklist: ['badword', 'buy followers'],
});
const viewer = (text: string, extra: Record<string, unknown> = {}) => analyze({ text, role: 'viewer', ...extra });

describe('intent', () => {
  it('recognises a command and splits its name and arguments', () => {
    const result = viewer('!SO  @friend now');
    expect(result.intent).toBe('command');
    expect(result.command).toEqual({ name: 'so', args: ['@friend', 'now'] });
    expect(parseCommand('!!!')).toBeUndefined();
    expect(parseCommand('hello !ping')).toBeUndefined();
    expect(parseCommand('?ping', '?')).toEqual({ name: 'ping', args: [] });
    expect(parseCommand('!uptime?')).toEqual({ name: 'uptime', args: [] });
  });

  it('recognises a mention of the bot, with or without @, case-insensitively', () => {
    expect(viewer('hey @bitbrat').intent).toBe('mention');
    expect(viewer('what do you think BitBrat').intent).toBe('mention');
    expect(viewer('bitbratfan is here').intent).not.toBe('mention');
  });

  it('recognises questions by question mark or question word', () => {
    expect(viewer('is the stream going to be long?').intent).toBe('question');
    expect(viewer('what game is this').intent).toBe('question');
    expect(viewer('can you play minecraft').intent).toBe('question');
    expect(viewer('is it live yet').intent).toBe('question');
    expect(viewer('do it now').intent).toBe('other');
  });

  it('recognises greetings and falls back to other', () => {
    expect(viewer('hello everyone').intent).toBe('greeting');
    expect(viewer('Good morning chat').intent).toBe('greeting');
    expect(viewer('nice play there').intent).toBe('other');
  });

  it('a mention that is also a question counts as a mention; every signal is reported', () => {
    const result = viewer('hi @bitbrat how are you?');
    expect(result.intent).toBe('mention');
    expect(result.signals).toEqual({ command: false, mention: true, question: true, greeting: true });
  });
});

describe('sentiment', () => {
  it('scores positive, negative and neutral messages', () => {
    const positive = viewer('I love this stream, awesome play!');
    expect(positive.sentiment).toBe('positive');
    expect(positive.sentimentScore).toBeGreaterThan(0.25);
    expect(positive.sentimentWords.positive).toEqual(['love', 'awesome']);
    const negative = viewer('this is boring and the audio sucks');
    expect(negative.sentiment).toBe('negative');
    expect(negative.sentimentScore).toBeLessThan(-0.25);
    expect(viewer('the map is loading').sentiment).toBe('neutral');
  });

  it('flips a word after a negation', () => {
    const result = viewer('this is not good');
    expect(result.sentiment).toBe('negative');
    expect(result.sentimentWords.negative).toEqual(['good']);
  });
});

describe('spam signals', () => {
  it('flags long all-caps messages but not short shouting', () => {
    const caps = viewer('WHY IS EVERYONE SO QUIET IN HERE TODAY');
    expect(caps.spam).toBe(true);
    expect(caps.spamSignals.map((signal) => signal.reason)).toContain('caps');
    expect(viewer('GG WP').spam).toBe(false);
  });

  it('flags repeated characters and repeated words', () => {
    expect(viewer('nooooooooooooooooooooo').spamSignals[0]?.reason).toBe('repeated-chars');
    expect(viewer('nooooooooooooooooooooo').spam).toBe(true);
    const words = viewer('follow follow follow follow follow me');
    expect(words.spam).toBe(true);
    expect(words.spamSignals.map((signal) => signal.reason)).toContain('repeated-words');
  });

  it('flags links to domains not on the allowlist, for viewers and subscribers but not VIPs', () => {
    const link = viewer('check out cheap-viewers.xyz/now');
    expect(link.spam).toBe(true);
    expect(link.spamSignals).toContainEqual(expect.objectContaining({ reason: 'link', detail: 'cheap-viewers.xyz' }));
    expect(viewer('see https://evil.example.org/x').spam).toBe(true);
    expect(viewer('clip: https://clips.twitch.tv/abc').spam).toBe(false);
    expect(viewer('www.youtube.com/watch?v=1').spam).toBe(false);
    expect(analyze({ text: 'check out cheap-viewers.xyz', role: 'subscriber' }).spam).toBe(true);
    expect(analyze({ text: 'check out cheap-viewers.xyz', role: 'vip' }).spam).toBe(false);
    expect(viewer('I like node.js and e.g. typescript').spamSignals).toEqual([]);
  });

  it('flags emote floods from platform emote positions', () => {
    expect(countEmotes('25:0-4,6-10,12-16/1902:18-22')).toBe(4);
    expect(countEmotes({ '25': ['0-4', '6-10'], '88': ['12-16'] })).toBe(3);
    expect(
      countEmotes([
        { id: '25', positions: ['0-4', '6-10'] },
        { id: '1', start: 0, end: 4 },
      ]),
    ).toBe(3);
    const flood = viewer('Kappa PogChamp Kappa LUL Kappa PogChamp LUL Kappa PogChamp LUL', {
      emotes: Array.from({ length: 10 }, (_, i) => ({ id: 'e', start: i * 6, end: i * 6 + 4 })),
    });
    expect(flood.spam).toBe(true);
    expect(flood.spamSignals.map((signal) => signal.reason)).toContain('emote-flood');
    expect(viewer('Kappa nice one', { emotes: [{ id: '25', start: 0, end: 4 }] }).spam).toBe(false);
  });

  it('flags blocklisted words (leetspeak folded) and phrases', () => {
    expect(viewer('you are a b4dw0rd').spamSignals).toContainEqual(expect.objectContaining({ reason: 'blocklist', detail: 'badword' }));
    expect(viewer('want to BUY   followers cheap').spam).toBe(true);
    expect(viewer('a perfectly fine message').spam).toBe(false);
  });

  it('exempts moderators, the broadcaster and trusted users from spam but still reports the signals', () => {
    for (const input of [{ role: 'moderator' }, { role: 'broadcaster' }, { role: 'viewer', roles: ['viewer', 'trusted'] }]) {
      const result = analyze({ text: 'BUY FOLLOWERS AT CHEAP-VIEWERS.XYZ NOW', ...input });
      expect(result.spam).toBe(false);
      expect(result.exempt).toBe('spam:exempt');
      expect(result.spamSignals.map((signal) => signal.reason)).toContain('blocklist');
    }
  });

  it('uses given permissions over the role', () => {
    expect(analyze({ text: 'see cheap-viewers.xyz', role: 'viewer', permissions: ['chat', 'links:post'] }).spam).toBe(false);
  });
});

describe('annotations', () => {
  it('writes intent, sentiment and spam annotations, and moderation when it is spam', () => {
    const clean = analysisAnnotations(viewer('what game is this?'));
    expect(clean.map((a) => `${a.kind}:${a.label}`)).toEqual(['intent:question', 'sentiment:neutral', 'spam:clean']);
    const spam = analysisAnnotations(viewer('buy followers at cheap-viewers.xyz'));
    expect(spam.map((a) => `${a.kind}:${a.label}`)).toEqual(['intent:other', 'sentiment:neutral', 'spam:spam', 'moderation:spam']);
    expect(spam.find((a) => a.kind === 'moderation')?.payload).toEqual({ action: 'flag', reasons: ['blocklist', 'link'] });
  });
});

describe('speed', () => {
  it('analyses a message in well under a millisecond on average', () => {
    const texts = [
      '!ping',
      'hello @bitbrat how are you?',
      'WHY IS EVERYONE SO QUIET IN HERE',
      'check cheap-viewers.xyz',
      'I love this stream',
      'gg',
    ];
    const count = 20_000;
    const started = performance.now();
    for (let i = 0; i < count; i += 1) analyze({ text: texts[i % texts.length]!, role: 'viewer' });
    const perMessageMs = (performance.now() - started) / count;
    expect(perMessageMs).toBeLessThan(0.2);
  });
});

describe('the query-analyzer service', () => {
  let bus: MessageBus;
  let host: Host | undefined;
  afterEach(async () => {
    await host?.stop();
    host = undefined;
    await bus?.close();
  });

  const start = async (options: QueryAnalyzerOptions = {}, env: Record<string, string> = {}) => {
    bus = createMemoryBus();
    await bus.connect();
    const observer = await collect(bus, [Topic.router, Topic.finalizer, Topic.deadletter]);
    host = await startTestHost({ services: [createQueryAnalyzer(options)], bus, env });
    const send = async (text: string, role = 'viewer') => {
      const envelope = createEnvelope({
        type: 'external.chat.message.v1',
        source: { platform: 'twitch', channel: 'c', channelId: '1' },
        user: { id: 'u', name: 'u', displayName: 'U', profileImageUrl: '', role, permissions: permissionsFor([role]) },
        payload: { text },
        routingSlip: [createStep('query-analyzer'), createStep('router')],
      });
      await bus.publish('internal.query-analyzer.v1', new TextEncoder().encode(JSON.stringify(envelope)));
      return envelope;
    };
    return { observer, send };
  };

  it('annotates a clean message, sets the command, and passes it on to the router', async () => {
    const { observer, send } = await start({}, { COMMAND_PREFIX: '?' });
    const envelope = await send('?Uptime please');
    const out: Envelope = await observer.waitFor(Topic.router, (value) => value.id === envelope.id);
    expect(out.message).toEqual({ text: '?Uptime please', command: 'uptime', args: ['please'] });
    expect(out.annotations?.map((a) => `${a.kind}:${a.label}`)).toEqual(['intent:command', 'sentiment:neutral', 'spam:clean']);
    expect(out.routingSlip.map((step) => step.status)).toEqual(['OK', 'PENDING']);
  });

  it('handles spam itself (blocklist and allowlist from env): moderation annotation, nothing further', async () => {
    const { observer, send } = await start({}, { ANALYZER_BLOCKLIST: 'scamword', ANALYZER_LINK_ALLOWLIST: 'example.org' });
    const spam = await send('this is a scamword');
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === spam.id);
    expect(final.outcome).toBe('handled');
    expect(final.annotations?.find((a) => a.kind === 'moderation')?.payload).toEqual({ action: 'flag', reasons: ['blocklist'] });
    const allowed = await send('docs at https://docs.example.org/page');
    await observer.waitFor(Topic.router, (value) => value.id === allowed.id);
  });

  it('asks the optional classifier only when the analysis is ambiguous, and keeps the result if it is too slow', async () => {
    const asked: string[] = [];
    const classifier: IntentClassifier = async (text) => {
      asked.push(text);
      if (text.startsWith('slow')) await new Promise((resolve) => setTimeout(resolve, 1_000));
      return { intent: 'question', intentScore: 0.66 };
    };
    const { observer, send } = await start({ classifier, classifierTimeoutMs: 50 });
    const clear = await send('what game is this?');
    const vague = await send('i wonder which map they pick next');
    const slow = await send('slow thinking about the ending of that movie');
    const intentOf = async (envelope: Envelope) =>
      ((await observer.waitFor(Topic.router, (value) => value.id === envelope.id)) as Envelope).annotations!.find(
        (a) => a.kind === 'intent',
      )!;
    expect((await intentOf(clear)).label).toBe('question');
    const refined = await intentOf(vague);
    expect(refined).toMatchObject({ label: 'question', score: 0.66, payload: { classifiedBy: 'classifier' } });
    expect((await intentOf(slow)).label).toBe('other');
    expect(asked).toEqual(['i wonder which map they pick next', 'slow thinking about the ending of that movie']);
  });
});
