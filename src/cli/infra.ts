import { BitBratError } from '../core/index.js';
import { checkInfra, generateInfra } from '../deploy/index.js';
import { loadArchitecture } from '../runtime/manifest.js';
import { parseFlags } from './flags.js';

/** `bitbrat infra generate [--out dir] [--check] [--project id] [--region r] [--image ref]` */
export async function infraCommand(args: string[]): Promise<number> {
  const { positionals, values } = parseFlags('infra', args, {
    out: { type: 'string' },
    check: { type: 'boolean' },
    project: { type: 'string' },
    region: { type: 'string' },
    image: { type: 'string' },
  });
  if (positionals[0] !== 'generate' || positionals.length > 1)
    throw new BitBratError(
      'BAD_REQUEST',
      'bitbrat infra: the only subcommand is "generate" (with --check to verify the files are in sync)',
    );
  const architecture = loadArchitecture();
  const options = { outDir: values.out, projectId: values.project, region: values.region, image: values.image };
  if (values.check) {
    const result = await checkInfra(architecture, options);
    if (result.inSync) {
      process.stdout.write(`${result.outDir} is in sync with architecture.yaml\n`);
      return 0;
    }
    for (const difference of result.differences) process.stderr.write(`${difference.kind}: ${difference.path}\n`);
    process.stderr.write(`${result.outDir} is out of sync with architecture.yaml; run "bitbrat infra generate"\n`);
    return 1;
  }
  const result = await generateInfra(architecture, options);
  for (const file of result.files) process.stdout.write(`wrote ${file}\n`);
  for (const file of result.removed) process.stdout.write(`removed ${file}\n`);
  for (const warning of result.warnings) process.stdout.write(`note: ${warning}\n`);
  return 0;
}
