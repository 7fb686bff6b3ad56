/**
 * The `bitbrat` command line. `bitbrat start` runs the whole platform in one process; `bitbrat service
 * <name>` runs one service (the container entry point); the rest are operator tools.
 */
import { BitBratError, isBitBratError } from '../core/index.js';
import { readEnv } from '../runtime/config.js';
import { parseFlags } from './flags.js';

const USAGE = `Usage: bitbrat <command> [options]

Commands:
  start [--services a,b]           Run every service in one process (memory bus and embedded store by default)
  service <name>                   Run one service (container entry point)
  send "text" [--user n] [--role r] [--url u] [--token t]
                                   Send a chat message through the api-gateway and print the bot's reply
  dlq list [--limit n] [--all] [--json]
                                   List dead letters (--all includes replayed ones)
  dlq replay <id> [--raw-file f]   Re-publish a dead letter (to the failed step, or to ingress once valid)
  events stalled [--limit n] [--json]
                                   List events not finalized within STALLED_AFTER_MS, with the step they wait at
  events dead-letter <id> [--reason r]
                                   Dead-letter a stalled event (STALLED) and record it as failed
  events replay <id> [--reason r]  Send a stalled event through again as a new envelope
  commands list|add|edit|delete    Manage custom chat commands (see bitbrat commands --help)
  reactions list|set <name> [--on|--off] [--template t] [--shoutout on|off]
                                   Switch off or reword the chat reactions to follows, subs, cheers, raids
  moderation filters|log|undo      A channel's chat filters, the moderation log, undo a timeout or ban
  toolkit timers|counters|quotes|giveaway <channel> …
                                   Timers, counters, quotes and giveaways of a channel
  infra generate [--out dir] [--check]
                                   Write deploy/compose.yaml and deploy/terraform/ from architecture.yaml
  up [--detach] [--services a,b]   Run every service as its own process over NATS and PostgreSQL
  down                             Stop a detached \`bitbrat up\`
  schema write [--check]           Write (or check) the JSON Schemas in schemas/
  help                             Show this help

Configuration comes from environment variables; see README.md.`;

type Handler = (args: string[]) => Promise<number>;

/** A command whose module is loaded only when it runs; it gets the arguments and the environment. */
const loaded =
  (load: () => Promise<(args: string[], env: Record<string, string | undefined>) => Promise<number>>): Handler =>
  async (args) =>
    await (await load())(args, readEnv());

const commands: Record<string, Handler> = {
  async start(args) {
    const { values, positionals } = parseFlags('start', args, { services: { type: 'string' } }, false);
    void positionals;
    const { runPlatform } = await import('./start.js');
    return await runPlatform({
      services: values.services
        ?.split(',')
        .map((name) => name.trim())
        .filter(Boolean),
      env: readEnv(),
    });
  },
  async service(args) {
    const { positionals } = parseFlags('service', args, {});
    if (positionals.length !== 1)
      throw new BitBratError('BAD_REQUEST', 'bitbrat service: give exactly one service name, e.g. "bitbrat service auth"');
    const { runPlatform } = await import('./start.js');
    return await runPlatform({ services: [positionals[0]!], env: readEnv(), single: true });
  },
  send: loaded(async () => (await import('./send.js')).sendCommand),
  dlq: loaded(async () => (await import('./dlq.js')).dlqCommand),
  events: loaded(async () => (await import('./events.js')).eventsCommand),
  commands: loaded(async () => (await import('./commands.js')).commandsCommand),
  reactions: loaded(async () => (await import('./reactions.js')).reactionsCommand),
  moderation: loaded(async () => (await import('./moderation.js')).moderationCommand),
  toolkit: loaded(async () => (await import('./moderation.js')).toolkitCommand),
  infra: loaded(async () => (await import('./infra.js')).infraCommand),
  up: loaded(async () => (await import('./up.js')).upCommand),
  down: loaded(async () => (await import('./up.js')).downCommand),
  async schema(args) {
    const { positionals, values } = parseFlags('schema', args, { check: { type: 'boolean' } });
    if (positionals[0] !== 'write')
      throw new BitBratError('BAD_REQUEST', 'bitbrat schema: the only subcommand is "write" (with --check to verify)');
    const { writeSchemaFiles } = await import('./schema.js');
    return await writeSchemaFiles(values.check === true);
  },
  async help() {
    process.stdout.write(USAGE + '\n');
    return 0;
  },
};

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h') {
    process.stdout.write(USAGE + '\n');
    return name ? 0 : 1;
  }
  const handler = commands[name];
  if (!handler) {
    process.stderr.write(`bitbrat: unknown command "${name}". Commands: ${Object.keys(commands).join(', ')}. Run "bitbrat help".\n`);
    return 2;
  }
  try {
    return await handler(rest);
  } catch (error) {
    if (isBitBratError(error)) {
      process.stderr.write(`bitbrat ${name}: ${error.code}: ${error.message}\n`);
      return error.code === 'BAD_REQUEST' || error.code === 'UNKNOWN_SERVICE' ? 2 : 1;
    }
    process.stderr.write(`bitbrat ${name}: ${(error as Error)?.stack ?? String(error)}\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] && /(?:bitbrat(?:\.js)?|cli[\\/]main\.ts)$/.test(process.argv[1]);
if (invokedDirectly) {
  const code = await main(process.argv.slice(2));
  // Long-running commands have closed everything by now; do not wait for stray handles (e.g. a
  // keep-alive socket) once output is flushed.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}
