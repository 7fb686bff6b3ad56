import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createEnvelope, createStep, type Annotation, type Envelope } from '../../src/core/index.js';
import { applyDecision, MAX_ROUTER_VISITS } from '../../src/services/event-router/plan.js';
import { DEFAULT_RULES_FILE, readRulesFile } from '../../src/services/event-router/load.js';
import {
  checkRule,
  compileRules,
  evaluationData,
  hasRole,
  matchRule,
  RULE_LIMITS,
  RulesFileSchema,
  type Stage,
} from '../../src/services/event-router/rules.js';

function chat(
  text: string,
  options: {
    role?: string;
    roles?: string[];
    login?: string;
    annotations?: Array<Partial<Annotation> & { kind: string }>;
    type?: string;
  } = {},
): Envelope {
  return createEnvelope({
    type: options.type ?? 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '1' },
    user: {
      id: 'u1',
      name: options.login ?? 'alice',
      displayName: 'Alice',
      profileImageUrl: '',
      role: options.role ?? 'viewer',
      ...(options.roles ? { roles: options.roles } : {}),
    },
    payload: { text },
    extra: {
      message: { text },
      annotations: (options.annotations ?? []).map((annotation, index) => ({
        id: `a${index}`,
        source: 'test',
        createdAt: new Date().toISOString(),
        ...annotation,
      })),
    },
  });
}

const rule = (id: string, logic: unknown, action: Record<string, unknown>, priority = 0, extra: Record<string, unknown> = {}) => ({
  id,
  logic,
  action,
  priority,
  ...extra,
});

function match(rules: unknown[], envelope: Envelope, stage: Stage = 'ingress', botName = 'bitbrat') {
  return matchRule(compileRules(rules), evaluationData(envelope, stage, botName));
}

describe('routing rule matching', () => {
  it('picks the highest-priority matching rule, and the id breaks ties', () => {
    const rules = [
      rule('low', true, { slip: ['a'] }, 1),
      rule('high-b', true, { slip: ['b'] }, 10),
      rule('high-a', true, { slip: ['c'] }, 10),
    ];
    expect(match(rules, chat('hi'))?.rule.id).toBe('high-a');
  });

  it('ignores disabled rules and reports invalid ones without failing the set', () => {
    const set = compileRules([
      rule('off', true, { slip: ['a'] }, 100, { enabled: false }),
      rule('bad-action', true, { egressDestination: 'x' }, 50),
      { id: 'bad-logic', logic: 'not logic', action: { slip: ['a'] } },
      rule('on', true, { slip: ['b'] }, 1),
    ]);
    expect(set.rules.map((r) => r.id)).toEqual(['on']);
    expect(set.rejected.map((r) => r.id).sort()).toEqual(['bad-action', 'bad-logic']);
    expect(set.rejected.find((r) => r.id === 'bad-action')?.error).toMatch(/slip or an outcome/);
  });

  it('returns no match when no rule applies', () => {
    expect(match([rule('never', false, { slip: ['a'] })], chat('hi'))).toBeUndefined();
  });

  it('treats a rule that throws as not matching and reports it', () => {
    const errors: string[] = [];
    // Known operators can still throw on odd arguments (json-logic-js reads null.length here).
    const set = compileRules([rule('broken', { missing_some: [1, null] }, { slip: ['a'] }, 5), rule('fallback', true, { slip: ['b'] })]);
    const found = matchRule(set, evaluationData(chat('x'), 'ingress', 'bitbrat'), (r) => errors.push(r.id));
    expect(found?.rule.id).toBe('fallback');
    expect(errors).toEqual(['broken']);
  });

  it('exposes stage, type, text, command, user, annotation labels and botName to rules', () => {
    const envelope = chat('!so friend', { annotations: [{ kind: 'intent', label: 'command' }] });
    envelope.message = { text: '!so friend', command: 'so', args: ['friend'] };
    const data = evaluationData(envelope, 'enriched', 'BitBrat');
    expect(data).toMatchObject({
      stage: 'enriched',
      type: 'external.chat.message.v1',
      text: '!so friend',
      command: 'so',
      args: ['friend'],
      user: { login: 'alice', name: 'Alice', role: 'viewer', permissions: [] },
      annotationLabels: { intent: 'command' },
      botName: 'BitBrat',
    });
    expect(
      match(
        [rule('r', { and: [{ '==': [{ var: 'command' }, 'so'] }, { '==': [{ var: 'args.0' }, 'friend'] }] }, { slip: ['commands'] })],
        envelope,
        'enriched',
      )?.rule.id,
    ).toBe('r');
  });
});

describe('custom JsonLogic operators', () => {
  it('has_role: at least the role in the order; banned and trusted only when held', () => {
    expect(hasRole({ role: 'moderator', roles: ['moderator'] }, 'subscriber')).toBe(true);
    expect(hasRole({ role: 'viewer', roles: ['viewer'] }, 'subscriber')).toBe(false);
    expect(hasRole({ role: 'broadcaster', roles: ['broadcaster'] }, 'moderator')).toBe(true);
    expect(hasRole({ role: 'banned', roles: ['banned', 'moderator'] }, 'viewer')).toBe(false);
    expect(hasRole({ role: 'banned', roles: ['banned'] }, 'banned')).toBe(true);
    expect(hasRole({ role: 'moderator', roles: ['moderator'] }, 'banned')).toBe(false);
    expect(hasRole({ role: 'moderator', roles: ['moderator'] }, 'trusted')).toBe(false);
    expect(hasRole({ role: 'moderator', roles: ['moderator', 'trusted'] }, 'trusted')).toBe(true);

    const modOnly = [rule('mods', { has_role: 'moderator' }, { slip: ['a'] })];
    expect(match(modOnly, chat('x', { role: 'moderator' }))).toBeDefined();
    expect(match(modOnly, chat('x', { role: 'vip' }))).toBeUndefined();
    const explicit = [rule('explicit', { has_role: [{ var: 'user' }, 'vip'] }, { slip: ['a'] })];
    expect(match(explicit, chat('x', { role: 'vip' }))).toBeDefined();
    expect(match(explicit, chat('x', { role: 'subscriber' }))).toBeUndefined();
  });

  it('regex matches with flags, and a computed pattern that cannot compile never matches', () => {
    const rules = [rule('re', { regex: [{ var: 'text' }, '^hello\\s+world$', 'i'] }, { slip: ['a'] })];
    expect(match(rules, chat('HELLO   world'))).toBeDefined();
    expect(match(rules, chat('hello there'))).toBeUndefined();
    expect(match([rule('bad', { regex: [{ var: 'text' }, { var: 'text' }] }, { slip: ['a'] })], chat('(unclosed'))).toBeUndefined();
    // The g flag would make repeated tests alternate; it is ignored.
    const global = compileRules([rule('g', { regex: [{ var: 'text' }, 'a', 'g'] }, { slip: ['a'] })]);
    const data = evaluationData(chat('a'), 'ingress', 'bitbrat');
    expect([matchRule(global, data), matchRule(global, data), matchRule(global, data)].every(Boolean)).toBe(true);
  });

  it('has_annotation checks kind and optional label; annotation_value returns the latest value', () => {
    const envelope = chat('x', {
      annotations: [
        { kind: 'sentiment', label: 'negative', value: -0.8 },
        { kind: 'intent', label: 'question', value: 'question' },
      ],
    });
    expect(match([rule('r', { has_annotation: 'intent' }, { slip: ['a'] })], envelope)).toBeDefined();
    expect(match([rule('r', { has_annotation: ['intent', 'question'] }, { slip: ['a'] })], envelope)).toBeDefined();
    expect(match([rule('r', { has_annotation: ['intent', 'greeting'] }, { slip: ['a'] })], envelope)).toBeUndefined();
    expect(match([rule('r', { has_annotation: 'spam' }, { slip: ['a'] })], envelope)).toBeUndefined();
    expect(match([rule('r', { '<': [{ annotation_value: 'sentiment' }, -0.5] }, { slip: ['a'] })], envelope)).toBeDefined();
    expect(match([rule('r', { '<': [{ annotation_value: 'sentiment' }, -0.9] }, { slip: ['a'] })], envelope)).toBeUndefined();
  });

  it('starts_with and lower work on strings and are false/empty otherwise', () => {
    expect(
      match([rule('r', { starts_with: [{ var: 'type' }, 'system.'] }, { outcome: 'handled' })], chat('', { type: 'system.stream.online' })),
    ).toBeDefined();
    expect(match([rule('r', { starts_with: [{ var: 'type' }, 'system.'] }, { outcome: 'handled' })], chat('hi'))).toBeUndefined();
    expect(
      match(
        [rule('r', { '==': [{ lower: { var: 'user.login' } }, { lower: { var: 'botName' } }] }, { outcome: 'handled' })],
        chat('hi', { login: 'BitBrat' }),
      ),
    ).toBeDefined();
    expect(match([rule('r', { '==': [{ lower: { var: 'nothing' } }, ''] }, { outcome: 'handled' })], chat('hi'))).toBeDefined();
  });
});

describe('applying a routing decision', () => {
  it('at ingress assigns the slip from the rule and records which rule routed it', () => {
    const found = match(
      [
        rule('enrich', true, {
          slip: ['query-analyzer', 'router'],
          egressDestination: 'internal.egress.x.v1',
          finalizationDestination: 'internal.finalizer.v1',
        }),
      ],
      chat('hi'),
    );
    const decision = applyDecision(chat('hi'), 'ingress', found);
    expect(decision.kind).toBe('continue');
    expect(decision.envelope.routingSlip.map((step) => [step.id, step.status, step.destination])).toEqual([
      ['query-analyzer', 'PENDING', 'internal.query-analyzer.v1'],
      ['router', 'PENDING', 'internal.router.v1'],
    ]);
    expect(decision.envelope.source.egressDestination).toBe('internal.egress.x.v1');
    expect(decision.envelope.annotations?.find((a) => a.kind === 'route')).toMatchObject({
      label: 'enrich',
      payload: { stage: 'ingress', rule: 'enrich' },
    });
  });

  it('when enriched, re-plans after the router step and keeps finished steps as history (R10)', () => {
    const envelope = chat('!ping');
    envelope.routingSlip = [
      { ...createStep('query-analyzer'), status: 'OK', attempt: 1, startedAt: new Date().toISOString(), endedAt: new Date().toISOString() },
      { ...createStep('router'), attempt: 1 },
      createStep('stale-step'),
    ];
    const decision = applyDecision(
      envelope,
      'enriched',
      match([rule('cmd', true, { slip: ['commands', { id: 'llm-bot', timeoutMs: 5000 }] })], envelope, 'enriched'),
    );
    expect(decision.kind).toBe('continue');
    expect(decision.envelope.routingSlip.map((step) => `${step.id}:${step.status}`)).toEqual([
      'query-analyzer:OK',
      'router:PENDING',
      'commands:PENDING',
      'llm-bot:PENDING',
    ]);
    expect(decision.envelope.routingSlip[3]?.timeoutMs).toBe(5000);
  });

  it('no match is handled with outcome unrouted; an outcome action is handled with that outcome', () => {
    const none = applyDecision(chat('hmm'), 'enriched', undefined);
    expect(none).toMatchObject({ kind: 'handled', outcome: 'unrouted' });
    expect(none.envelope.annotations?.find((a) => a.kind === 'route')?.label).toBe('unrouted');
    const drop = applyDecision(
      chat('x'),
      'enriched',
      match([rule('drop', true, { outcome: 'handled', annotate: { kind: 'moderation', label: 'dropped' } })], chat('x')),
    );
    expect(drop).toMatchObject({ kind: 'handled', outcome: 'handled' });
    expect(drop.envelope.annotations?.some((a) => a.kind === 'moderation' && a.label === 'dropped' && a.source === 'event-router')).toBe(
      true,
    );
  });

  it('refuses to send an envelope back to the router forever', () => {
    const envelope = chat('x');
    envelope.routingSlip = Array.from({ length: MAX_ROUTER_VISITS }, () => ({ ...createStep('router'), status: 'OK' as const }));
    envelope.routingSlip.push(createStep('router'));
    const decision = applyDecision(
      envelope,
      'enriched',
      match([rule('loop', true, { slip: ['query-analyzer', 'router'] })], envelope, 'enriched'),
    );
    expect(decision.kind).toBe('loop');
  });
});

describe('the default rules file', () => {
  const file = RulesFileSchema.parse(JSON.parse(readFileSync(DEFAULT_RULES_FILE, 'utf8')));
  const set = compileRules(file.rules);
  const route = (envelope: Envelope, stage: Stage) => matchRule(set, evaluationData(envelope, stage, 'bitbrat'))?.action;

  it('is valid', () => {
    expect(set.rejected).toEqual([]);
    expect(set.rules.length).toBeGreaterThanOrEqual(6);
  });

  it('gives chat messages the enrichment slip and ends system events as handled', () => {
    expect(route(chat('hello'), 'ingress')).toMatchObject({ slip: ['query-analyzer', 'moderation', 'router'] });
    expect(route(chat('', { type: 'system.stream.online' }), 'ingress')).toMatchObject({ outcome: 'handled' });
    expect(route(chat('hello', { login: 'BitBrat' }), 'ingress')).toMatchObject({ outcome: 'handled' });
  });

  it('after enrichment: spam is dropped, commands go to commands, questions and mentions to llm-bot, the rest is unrouted', () => {
    const enriched = (labels: Record<string, string>) =>
      chat('x', { annotations: Object.entries(labels).map(([kind, label]) => ({ kind, label })) });
    expect(route(enriched({ intent: 'command', spam: 'spam' }), 'enriched')).toMatchObject({ outcome: 'handled' });
    expect(route(enriched({ intent: 'command', spam: 'clean' }), 'enriched')).toMatchObject({ slip: ['commands'] });
    expect(route(enriched({ intent: 'question', spam: 'clean' }), 'enriched')).toMatchObject({ slip: ['llm-bot'] });
    expect(route(enriched({ intent: 'mention', spam: 'clean' }), 'enriched')).toMatchObject({ slip: ['llm-bot'] });
    expect(route(enriched({ intent: 'other', spam: 'clean' }), 'enriched')).toBeUndefined();
  });
});

/** `{"!": {"!": ... true}}` nested `depth` levels, built without recursion. */
function nested(depth: number): unknown {
  let logic: unknown = true;
  for (let i = 0; i < depth; i += 1) logic = { '!': [logic] };
  return logic;
}

const problemsOf = (input: unknown, knownSteps?: string[]) => {
  const checked = checkRule(input, knownSteps);
  return checked.ok ? [] : checked.problems;
};

describe('checking a rule before it is saved or loaded', () => {
  it('refuses ids that are too long or need escaping in a URL, and accepts the usual ones', () => {
    expect(problemsOf(rule('x'.repeat(150), true, { slip: ['a'] })).join()).toMatch(/at most 64 characters/);
    expect(problemsOf(rule('has space', true, { slip: ['a'] })).join()).toMatch(/letters, digits/);
    expect(problemsOf(rule('a/b', true, { slip: ['a'] })).join()).toMatch(/letters, digits/);
    expect(problemsOf(rule('Chat-enrichment_2.v1', true, { slip: ['a'] }))).toEqual([]);
  });

  it('refuses unknown operators anywhere in the logic, naming them', () => {
    const problems = problemsOf(rule('r', { and: [true, { '==': [{ var: 'text' }, 'x'] }, { shout: [1] }] }, { slip: ['a'] }));
    expect(problems.join()).toMatch(/logic\.and\.2: unknown operator "shout"; known operators: .*has_role/);
    expect(problemsOf(rule('r', { log: 'x' }, { slip: ['a'] })).join()).toMatch(/unknown operator "log"/);
    const many = problemsOf(rule('r', { and: Array.from({ length: 1_000 }, (_, i) => ({ [`op${i}`]: [] })) }, { slip: ['a'] }));
    expect(many).toHaveLength(10);
  });

  it('refuses logic nested deeper than the limit, at 2,000 and at 50,000 levels, without overflowing the stack', () => {
    expect(problemsOf(rule('ok', nested(RULE_LIMITS.logicDepth / 2 - 1), { slip: ['a'] }))).toEqual([]);
    for (const depth of [RULE_LIMITS.logicDepth, 2_000, 50_000]) {
      expect(problemsOf(rule('deep', nested(depth), { slip: ['a'] })).join()).toMatch(/nested deeper than 64 levels/);
    }
  });

  it('refuses logic with too many values and rules too large as JSON', () => {
    expect(problemsOf(rule('wide', { in: [{ var: 'text' }, Array.from({ length: 6_000 }, (_, i) => i)] }, { slip: ['a'] })).join()).toMatch(
      /more than 5000 values/,
    );
    const long = Array.from({ length: 200 }, () => 'x'.repeat(400));
    expect(problemsOf(rule('big', { in: [{ var: 'text' }, long] }, { slip: ['a'] })).join()).toMatch(/characters as JSON; at most 65536/);
  });

  it('refuses regex patterns the linear-time engine cannot run, saying why', () => {
    const regex = (pattern: string, flags?: string) =>
      rule('re', { regex: [{ var: 'text' }, pattern, ...(flags ? [flags] : [])] }, { slip: ['a'] });
    expect(problemsOf(regex('(a)\\1')).join()).toMatch(/backreferences and lookaround are not supported/);
    expect(problemsOf(regex('foo(?=bar)')).join()).toMatch(/backreferences and lookaround are not supported/);
    expect(problemsOf(regex('(?<!x)y')).join()).toMatch(/refused/);
    expect(problemsOf(regex('(unclosed')).join()).toMatch(/missing closing \)/);
    expect(problemsOf(regex('a'.repeat(501))).join()).toMatch(/longer than 500/);
    expect(problemsOf(regex('a', 'x')).join()).toMatch(/flags "x"/);
    expect(problemsOf(regex('^(a+)+$', 'i'))).toEqual([]);
  });

  it('refuses slip steps no service serves, naming the step and the known ones', () => {
    const known = ['commands', 'llm-bot', 'query-analyzer', 'router'];
    const problems = problemsOf(rule('r', true, { slip: ['query-analyzer', 'bogus-step'] }), known);
    expect(problems).toEqual([
      'action.slip.1: step "bogus-step" is served by no service; known steps: commands, llm-bot, query-analyzer, router',
    ]);
    expect(problemsOf(rule('r', true, { slip: [{ id: 'x', destination: 'internal.nowhere.v1' }] }), known).join()).toMatch(
      /internal\.nowhere\.v1, which no service consumes/,
    );
    expect(problemsOf(rule('r', true, { slip: [{ id: 'ask', destination: 'internal.llm-bot.v1' }, 'commands'] }), known)).toEqual([]);
  });
});

describe('rule regexes', () => {
  it('run in linear time: a catastrophic pattern answers a long message at once', () => {
    const set = compileRules([rule('evil', { regex: [{ var: 'text' }, '^(a+)+$'] }, { slip: ['a'] })]);
    expect(set.rejected).toEqual([]);
    // A backtracking engine needs seconds for 30 characters (2^n paths); RE2 needs microseconds.
    const started = performance.now();
    expect(matchRule(set, evaluationData(chat(`${'a'.repeat(26)}!`), 'ingress', 'bitbrat'))).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(matchRule(set, evaluationData(chat('aaaa'), 'ingress', 'bitbrat'))?.rule.id).toBe('evil');
  });

  it('honour the i, m and s flags', () => {
    const one = (pattern: string, flags: string, text: string) =>
      match([rule('r', { regex: [{ var: 'text' }, pattern, flags] }, { slip: ['a'] })], chat(text)) !== undefined;
    expect(one('^b$', 'm', 'a\nb')).toBe(true);
    expect(one('^b$', '', 'a\nb')).toBe(false);
    expect(one('a.b', 's', 'a\nb')).toBe(true);
    expect(one('a.b', '', 'a\nb')).toBe(false);
    expect(one('ABC', 'i', 'xabcx')).toBe(true);
  });
});

describe('reading a rules file', () => {
  it('skips and reports each bad rule, keeping the good ones', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rules-'));
    try {
      const file = path.join(dir, 'rules.json');
      await writeFile(
        file,
        JSON.stringify({
          rules: [
            rule('good', true, { slip: ['commands'] }),
            rule('unknown-op', { shout: [1] }, { slip: ['commands'] }),
            rule('bogus', true, { slip: ['bogus-step'] }),
            rule('good', false, { slip: ['commands'] }),
            rule('also-good', { regex: [{ var: 'text' }, '^!'] }, { slip: ['commands'] }),
          ],
        }),
      );
      const { rules, rejected } = await readRulesFile(file, { knownSteps: ['commands'] });
      expect(rules.map((r) => r.id)).toEqual(['good', 'also-good']);
      expect(rejected.map((r) => [r.index, r.id])).toEqual([
        [1, 'unknown-op'],
        [2, 'bogus'],
        [3, 'good'],
      ]);
      expect(rejected[0]!.problems.join()).toMatch(/unknown operator "shout"/);
      expect(rejected[1]!.problems.join()).toMatch(/bogus-step/);
      expect(rejected[2]!.problems.join()).toMatch(/defined twice/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
