/**
 * AES-256-GCM for oauth token fields at rest. Stored values look like `enc:v1:<iv>:<tag>:<ciphertext>`
 * (base64). The record id is bound as additional authenticated data, so a ciphertext copied onto another
 * token row does not decrypt.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { ensurePrivateDir } from './common.js';
import { join } from 'node:path';
import { BitBratError } from '../core/errors.js';
import type { CreateStoreOptions } from './types.js';

export const TOKEN_KEY_SECRET = 'TOKEN_ENCRYPTION_KEY';
export const TOKEN_KEY_FILE = 'token.key';
const PREFIX = 'enc:v1:';
const KEY_BYTES = 32;
const IV_BYTES = 12;

export interface TokenCipher {
  encrypt(plaintext: string, aad: string): string;
  decrypt(stored: string, aad: string): string;
}

/** True when `value` has the shape of an encrypted field. */
export function isEncryptedValue(value: unknown): boolean {
  return typeof value === 'string' && value.startsWith(PREFIX);
}

/** Parses a 32-byte key given as 64 hex characters or base64/base64url; never echoes the value. */
export function parseTokenKey(value: string, origin = TOKEN_KEY_SECRET): Buffer {
  const text = value.trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
    const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (key.length === KEY_BYTES) return key;
    throw new BitBratError(
      'CONFIG_INVALID',
      `${origin} must be ${KEY_BYTES} bytes encoded as base64 or hex (it decodes to ${key.length} bytes)`,
    );
  }
  throw new BitBratError('CONFIG_INVALID', `${origin} must be ${KEY_BYTES} bytes encoded as base64 or hex`);
}

export function createTokenCipher(key: Buffer): TokenCipher {
  if (key.length !== KEY_BYTES) throw new BitBratError('CONFIG_INVALID', `token encryption key must be ${KEY_BYTES} bytes`);
  return {
    encrypt(plaintext, aad) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(aad, 'utf8'));
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return `${PREFIX}${iv.toString('base64')}:${tag.toString('base64')}:${ciphertext.toString('base64')}`;
    },
    decrypt(stored, aad) {
      if (!isEncryptedValue(stored)) throw new BitBratError('STORE_CONSTRAINT', 'stored token field is not encrypted');
      const [iv, tag, ciphertext] = stored.slice(PREFIX.length).split(':');
      if (iv === undefined || tag === undefined || ciphertext === undefined)
        throw new BitBratError('STORE_CONSTRAINT', 'stored token field is malformed');
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64'));
        decipher.setAAD(Buffer.from(aad, 'utf8'));
        decipher.setAuthTag(Buffer.from(tag, 'base64'));
        return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64')), decipher.final()]).toString('utf8');
      } catch (cause) {
        throw new BitBratError(
          'CONFIG_INVALID',
          `a stored oauth token cannot be decrypted: ${TOKEN_KEY_SECRET} differs from the key it was written with`,
          { cause },
        );
      }
    },
  };
}

/**
 * Resolves the key: the secret when set; otherwise, in an embedded deployment, a key generated once and
 * kept in `${dataDir}/token.key` (mode 0600); otherwise SECRET_MISSING.
 */
export async function loadTokenCipher(
  options: Pick<CreateStoreOptions, 'secrets' | 'embedded' | 'dataDir' | 'logger'>,
): Promise<TokenCipher> {
  const secret = await options.secrets?.get(TOKEN_KEY_SECRET);
  if (secret !== undefined && secret.trim() !== '') return createTokenCipher(parseTokenKey(secret));
  if (!options.embedded) {
    throw new BitBratError(
      'SECRET_MISSING',
      `${TOKEN_KEY_SECRET} is required to encrypt oauth tokens at rest (32 bytes as base64 or hex, e.g. \`openssl rand -base64 32\`)`,
    );
  }
  if (!options.dataDir || options.dataDir === 'memory://') {
    options.logger?.warn(
      { secret: TOKEN_KEY_SECRET },
      'no token encryption key and no data directory: using a key that lasts only for this process',
    );
    return createTokenCipher(randomBytes(KEY_BYTES));
  }
  return createTokenCipher(await keyFromFile(join(options.dataDir, TOKEN_KEY_FILE), options.logger));
}

async function keyFromFile(path: string, logger: CreateStoreOptions['logger']): Promise<Buffer> {
  try {
    return parseTokenKey(await readFile(path, 'utf8'), path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const key = randomBytes(KEY_BYTES);
  await ensurePrivateDir(join(path, '..'));
  try {
    // `wx`: when two processes race, the loser reads the winner's key instead of replacing it.
    await writeFile(path, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    logger?.info({ path }, 'generated a token encryption key');
    return key;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return parseTokenKey(await readFile(path, 'utf8'), path);
  }
}
