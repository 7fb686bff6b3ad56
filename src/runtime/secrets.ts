/**
 * Secrets come from a provider, never straight from process.env in service code, so that the same
 * service runs with environment secrets locally, files in containers and Secret Manager in the cloud.
 */
export interface SecretsProvider {
  readonly kind: string;
  /** The secret's value, or undefined when it is not set. */
  get(name: string): Promise<string | undefined>;
}

/** Reads secrets from a snapshot of the environment taken by the config module. */
export function createEnvSecretsProvider(env: Record<string, string | undefined>): SecretsProvider {
  return {
    kind: 'env',
    async get(name) {
      const value = env[name];
      return value === undefined || value === '' ? undefined : value;
    },
  };
}

/** Reads a required secret or throws a clear error naming it (never its value). */
export async function requireSecret(provider: SecretsProvider, name: string): Promise<string> {
  const value = await provider.get(name);
  if (value === undefined) {
    const { BitBratError } = await import('../core/index.js');
    throw new BitBratError('SECRET_MISSING', `secret ${name} is not set (provider: ${provider.kind})`);
  }
  return value;
}
