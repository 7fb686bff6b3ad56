/**
 * A fake Twitch chat server: IRC over WebSocket on loopback, speaking enough of the real protocol for the
 * real Twurple ChatClient (CAP LS 302 / REQ / END, PASS / NICK / USER, JOIN / PART, PING / PONG, PRIVMSG with
 * tags, USERSTATE / ROOMSTATE / GLOBALUSERSTATE, NOTICE msg_ratelimit, RECONNECT).
 *
 * The same HTTP port also answers `GET /auth/validate` and `POST /auth/token`, the two Twitch auth calls the
 * chat client makes, so `TWURPLE_MOCK_API_PORT=<fake.port>` routes them here.
 *
 * Everything clients send is recorded (`lines`, `privmsgs`, `sentAt`) for assertions.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';

export interface FakeUserState {
  /** Raw `badges` tag, e.g. `moderator/1` or `vip/1`. Default: none. */
  badges?: string;
  /** Default: true when badges contain moderator or broadcaster. */
  mod?: boolean;
}

export interface FakeTwitchIrcOptions {
  /** Default: a free port. stop()/start() reuse it. */
  port?: number;
  /** Login of the bot account (the nick, and what /auth/validate returns). Default `bitbrat_bot`. */
  botLogin?: string;
  /** Default `900001`. */
  botUserId?: string;
  /** Tokens accepted in PASS and /auth/validate; anything else fails authentication. Default: any token. */
  acceptTokens?: string[];
  /** Scopes /auth/validate reports. Default chat:read chat:edit. */
  scopes?: string[];
  /** Room ids by channel login. Default: derived from the name. */
  roomIds?: Record<string, string>;
  /** The bot's USERSTATE per channel (mod/vip badges). Default: no badges. */
  userStates?: Record<string, FakeUserState>;
  /** When set, PRIVMSGs beyond `max` within `windowMs` per connection get NOTICE msg_ratelimit instead of going out. */
  rateLimit?: { max: number; windowMs: number };
  /** Send a USERSTATE carrying the new message id after each accepted PRIVMSG (as Twitch does). Default true. */
  echoUserStateId?: boolean;
}

export interface ReceivedLine {
  connection: number;
  line: string;
  at: number;
}

export interface ReceivedPrivmsg {
  connection: number;
  channel: string;
  text: string;
  tags: Record<string, string>;
  at: number;
  /** Id the server gave the message (sent back in USERSTATE), undefined when rejected. */
  id?: string;
  accepted: boolean;
}

export interface ChatInput {
  channel: string;
  /** Login of the chatter. Default `viewer`. */
  user?: string;
  text: string;
  /** Extra or overriding tags. */
  tags?: Record<string, string>;
}

interface ClientState {
  id: number;
  socket: WebSocket;
  nick?: string;
  token?: string;
  registered: boolean;
  caps: Set<string>;
  channels: Set<string>;
  sent: number[];
}

interface ParsedLine {
  tags: Record<string, string>;
  prefix?: string;
  command: string;
  params: string[];
}

const SERVER = 'tmi.twitch.tv';

/** Parses one IRC line (IRCv3 tags, prefix, command, params with trailing). */
export function parseIrcLine(line: string): ParsedLine {
  let rest = line;
  const tags: Record<string, string> = {};
  if (rest.startsWith('@')) {
    const space = rest.indexOf(' ');
    for (const pair of rest.slice(1, space).split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0) tags[pair] = '';
      else tags[pair.slice(0, eq)] = unescapeTag(pair.slice(eq + 1));
    }
    rest = rest.slice(space + 1);
  }
  let prefix: string | undefined;
  if (rest.startsWith(':')) {
    const space = rest.indexOf(' ');
    prefix = rest.slice(1, space);
    rest = rest.slice(space + 1);
  }
  const params: string[] = [];
  const trailingAt = rest.indexOf(' :');
  const head = trailingAt >= 0 ? rest.slice(0, trailingAt) : rest;
  const parts = head.split(' ').filter(Boolean);
  const command = (parts.shift() ?? '').toUpperCase();
  params.push(...parts);
  if (trailingAt >= 0) params.push(rest.slice(trailingAt + 2));
  return { tags, prefix, command, params };
}

function escapeTag(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/;/g, '\\:').replace(/ /g, '\\s').replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}

function unescapeTag(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => ({ ':': ';', s: ' ', '\\': '\\', r: '\r', n: '\n' })[c] ?? c);
}

function formatTags(tags: Record<string, string>): string {
  return (
    '@' +
    Object.entries(tags)
      .map(([key, value]) => `${key}=${escapeTag(value)}`)
      .join(';')
  );
}

function derivedId(name: string): string {
  let hash = 7;
  for (const char of name) hash = (hash * 31 + char.charCodeAt(0)) % 90_000_000;
  return String(10_000_000 + hash);
}

/** The fake server; create with `startFakeTwitchIrc`. */
export class FakeTwitchIrc {
  readonly lines: ReceivedLine[] = [];
  readonly privmsgs: ReceivedPrivmsg[] = [];
  /** Times (ms) of every PRIVMSG received, accepted or not, for rate assertions. */
  readonly sentAt: number[] = [];
  /** WebSocket connections accepted since creation. */
  connections = 0;
  /** Access tokens handed out by /auth/token (refresh grant). */
  readonly refreshedTokens: string[] = [];
  /** Authorization tokens seen by /auth/validate. */
  readonly validatedTokens: string[] = [];

  private readonly clients = new Map<number, ClientState>();
  private readonly userStates: Record<string, FakeUserState>;
  private options: FakeTwitchIrcOptions;
  private readonly acceptTokens: Set<string> | undefined;
  private http?: Server;
  private wss?: WebSocketServer;
  private nextClient = 1;
  private _port: number;

  constructor(options: FakeTwitchIrcOptions & { port: number }) {
    this.options = options;
    this._port = options.port;
    this.userStates = { ...options.userStates };
    this.acceptTokens = options.acceptTokens ? new Set(options.acceptTokens) : undefined;
  }

  get port(): number {
    return this._port;
  }

  /** `ws://127.0.0.1:<port>`, the value for TWITCH_IRC_URL. */
  get url(): string {
    return `ws://127.0.0.1:${this._port}`;
  }

  get botLogin(): string {
    return this.options.botLogin ?? 'bitbrat_bot';
  }

  get botUserId(): string {
    return this.options.botUserId ?? '900001';
  }

  /** Connections currently open. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** Connections that completed NICK registration and joined `channel`. */
  joinedClients(channel: string): number {
    const name = channel.replace(/^#/, '').toLowerCase();
    return [...this.clients.values()].filter((client) => client.registered && client.channels.has(name)).length;
  }

  roomId(channel: string): string {
    const name = channel.replace(/^#/, '').toLowerCase();
    return this.options.roomIds?.[name] ?? derivedId(name);
  }

  async start(): Promise<void> {
    if (this.http) return;
    const wss = new WebSocketServer({ noServer: true });
    const http = createServer((req, res) => this.handleHttp(req, res));
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
    });
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(this._port, '127.0.0.1', () => {
        http.off('error', reject);
        resolve();
      });
    });
    const address = http.address();
    if (typeof address === 'object' && address) this._port = address.port;
    this.http = http;
    this.wss = wss;
  }

  /** Closes every connection and stops listening (the port stays reserved for start()). */
  async stop(): Promise<void> {
    const http = this.http;
    if (!http) return;
    this.http = undefined;
    for (const client of this.clients.values()) client.socket.terminate();
    this.clients.clear();
    this.wss?.close();
    this.wss = undefined;
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  }

  /** Abruptly drops every connection while still listening (a network blip). */
  dropConnections(): void {
    for (const client of this.clients.values()) client.socket.terminate();
    this.clients.clear();
  }

  /** Sets the bot's USERSTATE for a channel; sent on the next JOIN and pushed now to joined clients. */
  setUserState(channel: string, state: FakeUserState): void {
    const name = channel.replace(/^#/, '').toLowerCase();
    this.userStates[name] = state;
    for (const client of this.clients.values()) if (client.channels.has(name)) this.write(client, this.userStateLine(client, name));
  }

  /** Changes the PRIVMSG limit (undefined: no limit); past it clients get NOTICE msg_ratelimit. */
  setRateLimit(limit: { max: number; windowMs: number } | undefined): void {
    this.options.rateLimit = limit;
  }

  /** Sends a raw line to every registered client. */
  broadcast(line: string): void {
    for (const client of this.clients.values()) if (client.registered) this.write(client, line);
  }

  /** Twitch's `RECONNECT`: the server asks clients to reconnect. */
  sendReconnect(): void {
    this.broadcast(`:${SERVER} RECONNECT`);
  }

  /** Builds a realistic PRIVMSG line for a chatter. */
  chatLine(input: ChatInput): { id: string; line: string } {
    const channel = input.channel.replace(/^#/, '').toLowerCase();
    const login = (input.user ?? 'viewer').toLowerCase();
    const id = input.tags?.id ?? randomUUID();
    const tags: Record<string, string> = {
      'badge-info': '',
      badges: '',
      color: '',
      'display-name': login.charAt(0).toUpperCase() + login.slice(1),
      emotes: '',
      'first-msg': '0',
      flags: '',
      id,
      mod: '0',
      'returning-chatter': '0',
      'room-id': this.roomId(channel),
      subscriber: '0',
      'tmi-sent-ts': String(Date.now()),
      turbo: '0',
      'user-id': derivedId(`user:${login}`),
      'user-type': '',
      ...input.tags,
    };
    return { id, line: `${formatTags(tags)} :${login}!${login}@${login}.tmi.twitch.tv PRIVMSG #${channel} :${input.text}` };
  }

  /** Injects a chat message into a channel; every client that joined it receives it. Returns the message id. */
  sendChat(input: ChatInput): string {
    const { id, line } = this.chatLine(input);
    const channel = input.channel.replace(/^#/, '').toLowerCase();
    for (const client of this.clients.values()) if (client.registered && client.channels.has(channel)) this.write(client, line);
    return id;
  }

  /** Sends several prepared lines to a channel's clients in one WebSocket frame (as Twitch batches them). */
  sendLines(channel: string, lines: string[]): void {
    const name = channel.replace(/^#/, '').toLowerCase();
    const frame = lines.map((line) => `${line}\r\n`).join('');
    for (const client of this.clients.values())
      if (client.registered && client.channels.has(name) && client.socket.readyState === 1) client.socket.send(frame);
  }

  /** PRIVMSGs received for a channel. */
  messagesTo(channel: string): ReceivedPrivmsg[] {
    const name = channel.replace(/^#/, '').toLowerCase();
    return this.privmsgs.filter((message) => message.channel === name);
  }

  /** Waits until `check` returns something truthy. */
  async waitFor<T>(check: () => T, timeoutMs = 10_000): Promise<NonNullable<T>> {
    const started = Date.now();
    for (;;) {
      const value = check();
      if (value) return value as NonNullable<T>;
      if (Date.now() - started > timeoutMs) throw new Error(`fake twitch irc: timed out after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  private accept(socket: WebSocket): void {
    const client: ClientState = { id: this.nextClient++, socket, registered: false, caps: new Set(), channels: new Set(), sent: [] };
    this.connections += 1;
    this.clients.set(client.id, client);
    let buffer = '';
    socket.on('message', (data) => {
      buffer += data.toString();
      const parts = buffer.split('\r\n');
      buffer = parts.pop() ?? '';
      for (const line of parts) if (line) this.handleLine(client, line);
    });
    socket.on('close', () => {
      if (this.clients.get(client.id) === client) this.clients.delete(client.id);
    });
    socket.on('error', () => undefined);
  }

  private write(client: ClientState, line: string): void {
    if (client.socket.readyState === 1) client.socket.send(`${line}\r\n`);
  }

  private tokenAccepted(token: string | undefined): boolean {
    if (!this.acceptTokens) return true;
    return token !== undefined && this.acceptTokens.has(token);
  }

  private userStateLine(client: ClientState, channel: string, messageId?: string): string {
    const state = this.userStates[channel] ?? {};
    const badges = state.badges ?? '';
    const mod = state.mod ?? /(^|,)(moderator|broadcaster)\//.test(badges);
    const tags: Record<string, string> = {
      'badge-info': '',
      badges,
      color: '#1E90FF',
      'display-name': client.nick ?? this.botLogin,
      'emote-sets': '0',
      ...(messageId ? { id: messageId } : {}),
      mod: mod ? '1' : '0',
      subscriber: '0',
      'user-type': mod ? 'mod' : '',
    };
    return `${formatTags(tags)} :${SERVER} USERSTATE #${channel}`;
  }

  private handleLine(client: ClientState, line: string): void {
    this.lines.push({ connection: client.id, line, at: Date.now() });
    const message = parseIrcLine(line);
    const nick = client.nick ?? '*';
    switch (message.command) {
      case 'CAP': {
        const sub = (message.params[0] ?? '').toUpperCase();
        if (sub === 'LS') this.write(client, `:${SERVER} CAP * LS :twitch.tv/membership twitch.tv/tags twitch.tv/commands`);
        else if (sub === 'REQ') {
          const requested = (message.params[1] ?? '').split(' ').filter(Boolean);
          const known = requested.every((cap) => ['twitch.tv/membership', 'twitch.tv/tags', 'twitch.tv/commands'].includes(cap));
          if (known) for (const cap of requested) client.caps.add(cap);
          this.write(client, `:${SERVER} CAP * ${known ? 'ACK' : 'NAK'} :${requested.join(' ')}`);
        }
        return;
      }
      case 'PASS':
        client.token = (message.params[0] ?? '').replace(/^oauth:/, '');
        return;
      case 'NICK': {
        client.nick = (message.params[0] ?? '').toLowerCase();
        if (!this.tokenAccepted(client.token)) {
          this.write(client, `:${SERVER} NOTICE * :Login authentication failed`);
          client.socket.close();
          return;
        }
        const me = client.nick;
        client.registered = true;
        this.write(client, `:${SERVER} 001 ${me} :Welcome, GLHF!`);
        this.write(client, `:${SERVER} 002 ${me} :Your host is ${SERVER}`);
        this.write(client, `:${SERVER} 003 ${me} :This server is rather new`);
        this.write(client, `:${SERVER} 004 ${me} :-`);
        this.write(client, `:${SERVER} 375 ${me} :-`);
        this.write(client, `:${SERVER} 372 ${me} :You are in a maze of twisty passages, all alike.`);
        this.write(client, `:${SERVER} 376 ${me} :>`);
        if (client.caps.has('twitch.tv/tags')) {
          this.write(
            client,
            `@badge-info=;badges=;color=#1E90FF;display-name=${me};emote-sets=0;user-id=${this.botUserId};user-type= :${SERVER} GLOBALUSERSTATE`,
          );
        }
        return;
      }
      case 'USER':
        return;
      case 'PING':
        this.write(client, `:${SERVER} PONG ${SERVER} :${message.params.at(-1) ?? ''}`);
        return;
      case 'JOIN': {
        if (!client.registered) return;
        for (const raw of (message.params[0] ?? '').split(',')) {
          const channel = raw.replace(/^#/, '').toLowerCase();
          if (!channel) continue;
          client.channels.add(channel);
          this.write(client, `:${nick}!${nick}@${nick}.tmi.twitch.tv JOIN #${channel}`);
          this.write(client, `:${nick}.tmi.twitch.tv 353 ${nick} = #${channel} :${nick}`);
          this.write(client, `:${nick}.tmi.twitch.tv 366 ${nick} #${channel} :End of /NAMES list`);
          this.write(client, this.userStateLine(client, channel));
          this.write(
            client,
            `@emote-only=0;followers-only=-1;r9k=0;room-id=${this.roomId(channel)};slow=0;subs-only=0 :${SERVER} ROOMSTATE #${channel}`,
          );
        }
        return;
      }
      case 'PART': {
        for (const raw of (message.params[0] ?? '').split(',')) {
          const channel = raw.replace(/^#/, '').toLowerCase();
          client.channels.delete(channel);
          this.write(client, `:${nick}!${nick}@${nick}.tmi.twitch.tv PART #${channel}`);
        }
        return;
      }
      case 'PRIVMSG': {
        const channel = (message.params[0] ?? '').replace(/^#/, '').toLowerCase();
        const text = message.params[1] ?? '';
        const now = Date.now();
        this.sentAt.push(now);
        const limit = this.options.rateLimit;
        if (limit) client.sent = client.sent.filter((at) => at > now - limit.windowMs);
        if (limit && client.sent.length >= limit.max) {
          this.privmsgs.push({ connection: client.id, channel, text, tags: message.tags, at: now, accepted: false });
          this.write(
            client,
            `@msg-id=msg_ratelimit :${SERVER} NOTICE #${channel} :Your message was not sent because you are sending messages too quickly.`,
          );
          return;
        }
        client.sent.push(now);
        const id = randomUUID();
        this.privmsgs.push({ connection: client.id, channel, text, tags: message.tags, at: now, id, accepted: true });
        if (this.options.echoUserStateId !== false) this.write(client, this.userStateLine(client, channel, id));
        return;
      }
      case 'QUIT':
        client.socket.close();
        return;
      default:
        return;
    }
  }

  private handleHttp(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && url.pathname === '/auth/validate') {
      const token = (req.headers.authorization ?? '').replace(/^(OAuth|Bearer)\s+/i, '');
      this.validatedTokens.push(token);
      const known = this.tokenAccepted(token) || this.refreshedTokens.includes(token);
      if (!token || !known) return json(401, { status: 401, message: 'invalid access token' });
      return json(200, {
        client_id: 'fake-client-id',
        login: this.botLogin,
        scopes: this.options.scopes ?? ['chat:read', 'chat:edit'],
        user_id: this.botUserId,
        expires_in: 14_000,
      });
    }
    if (req.method === 'POST' && url.pathname === '/auth/token') {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const params = new URLSearchParams(url.search);
        for (const [key, value] of new URLSearchParams(body)) params.set(key, value);
        if (params.get('grant_type') !== 'refresh_token' || !params.get('refresh_token'))
          return json(400, { status: 400, message: 'unsupported grant' });
        const accessToken = `refreshed-${randomUUID()}`;
        this.refreshedTokens.push(accessToken);
        this.acceptTokens?.add(accessToken);
        json(200, {
          access_token: accessToken,
          refresh_token: `refresh-${randomUUID()}`,
          expires_in: 14_000,
          scope: this.options.scopes ?? ['chat:read', 'chat:edit'],
          token_type: 'bearer',
        });
      });
      return;
    }
    json(404, { status: 404, message: 'not found' });
  }
}

/** Starts a fake Twitch IRC server on 127.0.0.1 (a free port unless given). */
export async function startFakeTwitchIrc(options: FakeTwitchIrcOptions = {}): Promise<FakeTwitchIrc> {
  // Port 0: the OS picks at listen time (a port probed free first can be taken by another test process meanwhile).
  const fake = new FakeTwitchIrc({ ...options, port: options.port ?? 0 });
  await fake.start();
  return fake;
}
