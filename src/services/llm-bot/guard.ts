/**
 * Prompt-injection defences for the LLM bot. Pure functions, no I/O.
 *
 * The model is treated as untrusted in both directions:
 * - input: chat text is only ever sent as *user* content (never concatenated into the system prompt);
 *   before that it is normalized (invisible/bidi characters removed, role markers and special-token
 *   delimiters neutralized) and classified, so the system prompt can carry a trusted warning;
 * - output: whatever the model says is filtered before it can reach chat — no system prompt (canary or
 *   long verbatim runs), no secrets (configured values in several encodings, well-known key shapes),
 *   no links outside an allowlist, no slurs, no markdown, and never a leading `/` or `.` that Twitch
 *   would run as a chat command (`/ban`, `.timeout`).
 * - tools: see mcp.ts; a tool the requester may not use is neither offered nor executable.
 */

/** Twitch's message limit is 500; leave room for the `@user` prefix egress may add. */
export const MAX_REPLY_CHARS = 450;
/** Longest chat text handed to the model. */
export const MAX_INPUT_CHARS = 500;
/** A reply sharing this many consecutive words with the private instructions counts as a leak. */
const LEAK_NGRAM = 8;

export const GuardFlag = {
  roleImpersonation: 'role-impersonation',
  delimiterInjection: 'delimiter-injection',
  overrideInstructions: 'override-instructions',
  revealSystemPrompt: 'reveal-system-prompt',
  secretRequest: 'secret-request',
  encodedPayload: 'encoded-payload',
  chatCommandRequest: 'chat-command-request',
  toolMisuse: 'tool-misuse',
  // output side
  systemPromptLeak: 'system-prompt-leak',
  secretLeak: 'secret-leak',
  chatCommand: 'chat-command',
  linkRemoved: 'link-removed',
  blockedTerm: 'blocked-term',
  markdown: 'markdown',
  truncated: 'truncated',
} as const;
export type GuardFlag = (typeof GuardFlag)[keyof typeof GuardFlag];

/** Fixed replies used when a model answer cannot be salvaged. */
export const CannedReply = {
  leak: "I can't share my instructions, but I'm happy to help with something else!",
  blockedTerm: "Let's keep chat friendly.",
} as const;

// ------------------------------------------------------------------------------------------------ input

const INVISIBLE =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F\u00AD\u061C\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]/g;

/** Chat-template and role markers a model may mistake for a real turn boundary. */
const ROLE_MARKERS: RegExp[] = [
  /<\|\s*[a-z_]*\s*\|>/gi, // <|im_start|>, <|system|>, <|endoftext|>, <|eot_id|>
  /<\/?\s*(?:system|developer|assistant|user|tool|instructions?|im_start|im_end|s|sys|context)\s*>/gi,
  /<<\s*\/?\s*SYS\s*>>/gi,
  /\[\s*\/?\s*(?:INST|SYS|SYSTEM|DEVELOPER|ASSISTANT|ADMIN)\s*\]/gi,
  /(^|\n|\s)#{1,6}\s*(?:system|developer|assistant|instructions?)\b\s*:?/gi,
  /(^|\n)\s*(?:system|developer|assistant|admin|root|openai|operator)\s*(?:message|prompt|note|override)?\s*:/gi,
  /"role"\s*:\s*"(?:system|developer|assistant|tool)"/gi,
  /\bBEGIN\s+(?:SYSTEM|DEVELOPER)\s+(?:PROMPT|MESSAGE|INSTRUCTIONS?)\b/gi,
];

const DELIMITERS: RegExp[] = [/`{3,}/g, /(?:^|\s)(?:-{4,}|={4,}|_{4,}|\*{4,}|#{4,}|~{4,})(?=\s|$)/g, /\]\]>|<!\[CDATA\[/gi];

interface Detector {
  flag: GuardFlag;
  patterns: RegExp[];
}

const DETECTORS: Detector[] = [
  {
    flag: GuardFlag.overrideInstructions,
    patterns: [
      /\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.!?\n]{0,40}\b(?:previous|prior|above|earlier|all|your|the|any|system|safety)\b[^.!?\n]{0,30}\b(?:instructions?|rules?|prompts?|directives?|guidelines?|programming|constraints?)/i,
      /\byou\s+are\s+(?:now|no\s+longer)\b/i,
      /\b(?:new|updated|real)\s+(?:instructions?|rules|system\s+prompt)\b/i,
      /\b(?:developer|god|dan|jailbreak|unrestricted|admin)\s+mode\b/i,
      /\bdo\s+anything\s+now\b/i,
      /\bpretend\s+(?:you\s+are|to\s+be)\b/i,
      // es, pt, fr, de, it, nl, pl, ru, zh, ja
      /\bignor(?:a|e|ar|ez|iere|ieren|eer|uj)\b[^.!?\n]{0,40}\b(?:instrucciones|instruções|instructions|anweisungen|istruzioni|instructies|instrukcje|reglas|regeln)\b/i,
      /\bvergiss\b[^.!?\n]{0,40}\b(?:anweisungen|regeln)\b/i,
      /игнорируй|забудь\s+(?:все\s+)?(?:предыдущие\s+)?инструкции/i,
      /忽略(?:之前|以上|所有|先前)?的?(?:指令|指示|说明|规则)/,
      /(?:以前|上記|前)の(?:指示|命令)を無視/,
    ],
  },
  {
    flag: GuardFlag.revealSystemPrompt,
    patterns: [
      /\b(?:system|initial|original|hidden|secret|developer)\s+(?:prompt|message|instructions?)\b/i,
      /\b(?:reveal|show|print|output|repeat|recite|tell\s+me|give\s+me|what\s+(?:are|were|is))\b[^.!?\n]{0,40}\b(?:your|the)\s+(?:instructions?|rules|prompt|guidelines|configuration)\b/i,
      /\b(?:repeat|print|output|copy|echo)\b[^.!?\n]{0,30}\b(?:text|words|everything|all|message)\s+(?:above|before|preceding)\b/i,
      /\b(?:everything|all)\s+(?:above|before)\s+(?:this|the\s+first)\b/i,
      /\bverbatim\b/i,
      /\b(?:muestra|revela|zeig|montre|mostra)\b[^.!?\n]{0,40}\b(?:instrucciones|prompt|anweisungen|instructions|istruzioni)\b/i,
      /(?:系统提示|系統提示|システムプロンプト|системн\S*\s+промпт)/i,
    ],
  },
  {
    flag: GuardFlag.secretRequest,
    patterns: [
      /\b(?:api|secret|access|auth|oauth|bearer|private)[\s_-]*(?:key|token|credential)s?\b/i,
      /\b(?:password|passwd|credentials?)\b/i,
      /\b(?:env(?:ironment)?\s+var(?:iable)?s?|process\.env|\.env\s+file)\b/i,
      /\bOPENAI_API_KEY\b|\bsk-[a-z0-9]/i,
    ],
  },
  {
    flag: GuardFlag.chatCommandRequest,
    patterns: [
      /(?:^|\s|["'`])[/.](?:ban|unban|timeout|untimeout|mod|unmod|vip|unvip|clear|delete|slow|followers|subscribers|emoteonly|uniquechat|raid|host|commercial|whisper|w|me|announce|block|color|marker)\b/i,
      /\b(?:ban|timeout|time\s+out|mute|kick)\b[^.!?\n]{0,20}\b(?:@?\w+|everyone|chat)\b[^.!?\n]{0,30}\b(?:start|begin|first|type|say|output|reply|write)\b/i,
      /\b(?:start|begin)\s+(?:your|the)\s+(?:reply|answer|message|response)\s+with\b/i,
    ],
  },
  {
    flag: GuardFlag.toolMisuse,
    patterns: [
      /\b(?:call|use|run|invoke|execute|trigger)\b[^.!?\n]{0,30}\b(?:tool|function|set_user_role|ban_user|timeout_user|mcp)\b/i,
      /\bset_user_role\b|\bfunction[_\s]?call\b/i,
    ],
  },
];

const BASE64_BLOB = /[A-Za-z0-9+/]{24,}={0,2}|[A-Za-z0-9_-]{32,}/g;

export interface InputGuardResult {
  /** The text to send as user content. */
  text: string;
  /** What looked like an injection attempt (for the system warning and the annotation). */
  flags: GuardFlag[];
}

function decodeBase64Text(blob: string): string | undefined {
  try {
    const decoded = Buffer.from(blob.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
    // Only count it as text when it is mostly printable.
    const printable = decoded.replace(/[^\x20-\x7E\s]/g, '');
    return decoded.length >= 8 && printable.length / decoded.length > 0.9 ? decoded : undefined;
  } catch {
    return undefined;
  }
}

function detect(text: string): Set<GuardFlag> {
  const flags = new Set<GuardFlag>();
  for (const detector of DETECTORS) if (detector.patterns.some((pattern) => pattern.test(text))) flags.add(detector.flag);
  return flags;
}

/**
 * Normalizes chat text before it becomes user content: NFKC (folds full-width look-alikes), invisible
 * and bidi control characters removed, chat-template role markers and delimiter runs neutralized,
 * length capped; classifies what looks like an injection attempt, including inside base64 blobs and
 * with spacing tricks (`i g n o r e`).
 */
export function sanitizeUserText(input: string): InputGuardResult {
  const flags = new Set<GuardFlag>();
  let text = input.normalize('NFKC').replace(INVISIBLE, '').replace(/\r\n?/g, '\n');
  for (const pattern of ROLE_MARKERS) {
    text = text.replace(pattern, (_match: string, lead?: string) => {
      flags.add(GuardFlag.roleImpersonation);
      return `${typeof lead === 'string' && /^\s*$/.test(lead) ? lead : ''}[filtered]`;
    });
  }
  for (const pattern of DELIMITERS) {
    text = text.replace(pattern, (match: string) => {
      flags.add(GuardFlag.delimiterInjection);
      return match.startsWith(' ') || match.startsWith('\n') ? ' ' : '';
    });
  }
  // Newlines let a message fake a transcript; chat is one line anyway.
  text = text
    .replace(/\s*\n+\s*/g, ' ')
    .replace(/[ \t]{2,}/g, ' ')
    .trim();
  if (text.length > MAX_INPUT_CHARS) text = `${text.slice(0, MAX_INPUT_CHARS)}…`;

  for (const flag of detect(text)) flags.add(flag);
  // Spaced-out or punctuated words: "i.g.n.o.r.e a-l-l r u l e s".
  const squeezed = text.replace(/(?<=\b\w)[\s.\-_*]+(?=\w\b)/g, '');
  if (squeezed !== text) for (const flag of detect(squeezed)) flags.add(flag);
  for (const blob of text.match(BASE64_BLOB) ?? []) {
    const decoded = decodeBase64Text(blob);
    if (!decoded) continue;
    flags.add(GuardFlag.encodedPayload);
    for (const flag of detect(decoded)) flags.add(flag);
  }
  if (/\b(?:base64|rot13|hex|decode|decrypt|reverse(?:d)?\s+(?:text|string))\b/i.test(text)) flags.add(GuardFlag.encodedPayload);
  return { text, flags: [...flags] };
}

// ----------------------------------------------------------------------------------------------- output

/** Shapes of well-known credentials, whatever the configured secrets are. */
const SECRET_PATTERNS: RegExp[] = [
  /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}/g, // OpenAI
  /\bAIza[0-9A-Za-z_-]{30,}/g, // Google API key
  /\bya29\.[0-9A-Za-z_-]{20,}/g, // Google OAuth access token
  /\bgh[pousr]_[A-Za-z0-9]{30,}/g, // GitHub
  /\boauth:[a-z0-9]{20,}/gi, // Twitch IRC token
  /\bxox[abprs]-[A-Za-z0-9-]{10,}/g, // Slack
  /\bAKIA[0-9A-Z]{16}\b/g, // AWS
  /\bBearer\s+[A-Za-z0-9._~+/-]{20,}=*/gi,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g,
  /\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/g, // JWT
];

/** A small list of slurs; matched as whole words after folding common letter substitutions. */
const BLOCKED_TERMS = ['nigger', 'nigga', 'faggot', 'fag', 'retard', 'kike', 'chink', 'spic', 'tranny', 'wetback', 'gook', 'coon'];
const LEET: Record<string, string> = {
  '0': 'o',
  '1': 'i',
  '!': 'i',
  '3': 'e',
  '4': 'a',
  '@': 'a',
  '5': 's',
  $: 's',
  '7': 't',
  '8': 'b',
  '9': 'g',
};
const BLOCKED_RE = new RegExp(`\\b(?:${BLOCKED_TERMS.join('|')})s?\\b`, 'i');

/** Hosts a reply may link to (and their subdomains). */
export const DEFAULT_LINK_ALLOWLIST = ['twitch.tv', 'twitch.com'] as const;

export interface OutputGuardOptions {
  /** The private part of the system prompt (persona + rules); long verbatim runs of it are a leak. */
  instructions: string;
  /** A random marker planted in the system prompt; seeing it in a reply proves a leak. */
  canary?: string;
  /** Secret values to never output (e.g. the provider API key), in any common encoding. */
  secrets?: Array<string | undefined>;
  linkAllowlist?: readonly string[];
  maxChars?: number;
  /** Words of the instructions a reply may repeat freely (the bot's and the channel's names). */
  publicTerms?: readonly string[];
}

export interface OutputGuardResult {
  text: string;
  flags: GuardFlag[];
  /** True when the model's answer was replaced by a canned reply or nothing is left. */
  blocked: boolean;
}

function words(text: string): string[] {
  return text
    .toLowerCase()
    .normalize('NFKC')
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim()
    .split(' ')
    .filter(Boolean);
}

/** True when `reply` repeats `LEAK_NGRAM` consecutive words of `instructions`. */
export function leaksInstructions(reply: string, instructions: string, n = LEAK_NGRAM): boolean {
  const source = words(instructions);
  if (source.length < n) return false;
  const grams = new Set<string>();
  for (let i = 0; i + n <= source.length; i += 1) grams.add(source.slice(i, i + n).join(' '));
  const target = words(reply);
  for (let i = 0; i + n <= target.length; i += 1) if (grams.has(target.slice(i, i + n).join(' '))) return true;
  return false;
}

/**
 * Code-like tokens of the instructions (letters and digits mixed, e.g. `marzipan-42`, `bb-3f9a…`):
 * an operator may have put a password or code in the persona, and no answer needs to repeat one.
 */
function distinctiveTokens(instructions: string): string[] {
  const tokens = instructions.match(/[\p{L}\p{N}][\p{L}\p{N}_-]{4,}[\p{L}\p{N}]/gu) ?? [];
  return tokens.filter((token) => /\p{L}/u.test(token) && /\p{N}/u.test(token) && token.length >= 6);
}

/** The forms a secret could be smuggled out in. */
function secretForms(secret: string): string[] {
  const forms = new Set<string>([
    secret,
    [...secret].reverse().join(''),
    Buffer.from(secret).toString('base64').replace(/=+$/, ''),
    Buffer.from(secret).toString('hex'),
  ]);
  // Keys spelled out with separators: "s k - a b c" / "s-k-a-b-c".
  forms.add([...secret].join(' '));
  return [...forms].filter((form) => form.length >= 6);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Removes credentials from any text (model output, provider error messages). */
export function redactSecrets(text: string, secrets: Array<string | undefined> = []): { text: string; found: boolean } {
  let out = text;
  let found = false;
  for (const secret of secrets) {
    if (!secret || secret.length < 6) continue;
    for (const form of secretForms(secret)) {
      const re = new RegExp(escapeRegExp(form), 'gi');
      if (re.test(out)) {
        found = true;
        out = out.replace(re, '[redacted]');
      }
    }
    // Pieces of it: any 12-character window (a key split across words still leaks), widened to the
    // whole run of the secret around it, so no shorter remainder of the key is left beside it.
    if (secret.length >= 16) {
      for (let i = 0; i + 12 <= secret.length; i += 1) {
        const piece = secret.slice(i, i + 12);
        for (let at = out.indexOf(piece); at !== -1; at = out.indexOf(piece)) {
          found = true;
          let start = at;
          let end = at + piece.length;
          for (let s = i; start > 0 && s > 0 && out[start - 1] === secret[s - 1]; s -= 1) start -= 1;
          for (let e = i + piece.length; end < out.length && e < secret.length && out[end] === secret[e]; e += 1) end += 1;
          out = `${out.slice(0, start)}[redacted]${out.slice(end)}`;
        }
      }
    }
    // A run of characters that are the secret with anything but letters/digits between them.
    const spaced = new RegExp([...secret].map(escapeRegExp).join('[^A-Za-z0-9]{0,3}'), 'gi');
    if (spaced.test(out)) {
      found = true;
      out = out.replace(spaced, '[redacted]');
    }
  }
  for (const pattern of SECRET_PATTERNS) {
    if (pattern.test(out)) {
      found = true;
      out = out.replace(pattern, '[redacted]');
    }
    pattern.lastIndex = 0;
  }
  return { text: out, found };
}

function hostAllowed(host: string, allowlist: readonly string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return allowlist.some((allowed) => h === allowed || h.endsWith(`.${allowed}`));
}

/** Markdown to plain chat text; links keep their text, images disappear. */
function stripMarkdown(text: string): { text: string; changed: boolean } {
  let out = text
    .replace(/```[a-z0-9_-]*\n?([\s\S]*?)```/gi, '$1')
    .replace(/!\[([^\]]*)\]\(([^)\s]*)[^)]*\)/g, '') // images (a classic exfiltration channel)
    .replace(/\[([^\]]+)\]\(([^)\s]+)[^)]*\)/g, '$1 ($2)')
    .replace(/^\s{0,3}#{1,6}\s+/gm, '')
    .replace(/^\s{0,3}>\s?/gm, '')
    .replace(/^\s*(?:[-*+]|\d+[.)])\s+/gm, '')
    .replace(/(\*\*|__)(.+?)\1/g, '$2')
    .replace(/(?<![\w*])\*(?!\s)([^*\n]+?)\*(?!\w)/g, '$1')
    .replace(/(?<!\w)_(?!\s)([^_\n]+?)_(?!\w)/g, '$1')
    .replace(/`([^`]+)`/g, '$1')
    .replace(/~~(.+?)~~/g, '$1');
  out = out.replace(/\s*\n+\s*/g, ' ');
  return { text: out, changed: out !== text.replace(/\s*\n+\s*/g, ' ') };
}

const URL_RE =
  /\b(?:https?:\/\/|www\.)[^\s<>()]+|\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|gg|tv|co|me|xyz|ru|cn|info|biz|dev|app|link|ly)\b(?:\/[^\s<>()]*)?/gi;

/** Anything Twitch (or another bot) would run instead of showing: `/ban`, `.timeout`, `\u0001ACTION`. */
function neutralizeCommand(text: string): { text: string; changed: boolean } {
  const trimmed = text.replace(/^[\s\u0001]+/, '');
  if (/^[/.\\]/.test(trimmed)) return { text: `» ${trimmed}`, changed: true };
  return { text: trimmed, changed: trimmed !== text.trimStart() };
}

/** Cuts at a word boundary and marks the cut. */
export function truncateReply(text: string, max = MAX_REPLY_CHARS): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max - 1);
  const space = cut.lastIndexOf(' ');
  return `${(space > max * 0.6 ? cut.slice(0, space) : cut).trimEnd()}…`;
}

/**
 * Filters a model answer into one safe chat message. The order matters: markdown first (so links are
 * visible), then leak checks on the plain text, then secrets, links, slurs, the command prefix, length.
 */
export function filterReply(raw: string, options: OutputGuardOptions): OutputGuardResult {
  const flags = new Set<GuardFlag>();
  const max = options.maxChars ?? MAX_REPLY_CHARS;
  let text = raw.normalize('NFKC').replace(INVISIBLE, '');
  const md = stripMarkdown(text);
  if (md.changed) flags.add(GuardFlag.markdown);
  text = md.text.replace(/\s{2,}/g, ' ').trim();

  const plain = text.toLowerCase();
  const squeezedCanary = options.canary
    ? plain.replace(/[^a-z0-9]/g, '').includes(options.canary.toLowerCase().replace(/[^a-z0-9]/g, ''))
    : false;
  const publicTerms = (options.publicTerms ?? []).map((term) => term.toLowerCase());
  const codeLeak = distinctiveTokens(options.instructions).some(
    (token) => !publicTerms.some((term) => term.includes(token.toLowerCase())) && plain.includes(token.toLowerCase()),
  );
  if (squeezedCanary || codeLeak || leaksInstructions(text, options.instructions)) {
    return { text: CannedReply.leak, flags: [...flags, GuardFlag.systemPromptLeak], blocked: true };
  }

  const redacted = redactSecrets(text, options.secrets);
  if (redacted.found) flags.add(GuardFlag.secretLeak);
  text = redacted.text;

  const allowlist = options.linkAllowlist ?? DEFAULT_LINK_ALLOWLIST;
  text = text.replace(URL_RE, (url) => {
    const host = url.replace(/^https?:\/\//i, '').split(/[/?#:]/)[0] ?? '';
    if (hostAllowed(host, allowlist)) return url;
    flags.add(GuardFlag.linkRemoved);
    return '[link removed]';
  });

  const folded = text.replace(/[0134579!@$8]/g, (c) => LEET[c] ?? c);
  if (BLOCKED_RE.test(text) || BLOCKED_RE.test(folded)) {
    return { text: CannedReply.blockedTerm, flags: [...flags, GuardFlag.blockedTerm], blocked: true };
  }

  const command = neutralizeCommand(text);
  if (command.changed) flags.add(GuardFlag.chatCommand);
  text = command.text;

  if (text.length > max) {
    flags.add(GuardFlag.truncated);
    text = truncateReply(text, max);
  }
  // Truncation can never re-expose a command prefix: the text still starts the same way.
  return { text, flags: [...flags], blocked: text.length === 0 };
}
