/**
 * The master keys that wrap the data keys of subject-keys.ts. On AWS a KMS key: the data key is
 * sent to KMS and back, wrapped, and the master key never leaves KMS. Locally a 32-byte key in a
 * file (the local stack writes one in its data directory; TOTES_MASTER_KEY_FILE names it): the
 * same wrapping with AES-256-GCM in the process. Either binds a wrapped key to its subject and
 * version (KMS encryption context, GCM associated data), so it cannot be moved to another.
 */
import { randomBytes } from 'node:crypto';
import { gcmOpen, gcmSeal } from '../formats/personal-data.ts';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { ConfigError, ENV } from '../lib/config.ts';
import type { S3Client } from '@aws-sdk/client-s3';
import { type KeyWrapper, SubjectKeys } from './subject-keys.ts';

export class LocalMasterKey implements KeyWrapper {
  readonly name = 'local';
  private constructor(private readonly key: Buffer) {}

  /** The master key in `path`, written there first (mode 0600) when `create` and it does not exist. */
  static fromFile(path: string, create = false): LocalMasterKey {
    if (!existsSync(path)) {
      if (!create) throw new ConfigError(`${path} does not exist: ${ENV.masterKeyFile} must name the local master key file the key store was written with`);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, randomBytes(32), { mode: 0o600, flag: 'wx' });
    }
    const key = readFileSync(path);
    if (key.length !== 32) throw new ConfigError(`${path} holds ${key.length} bytes: a local master key is 32`);
    return new LocalMasterKey(key);
  }

  async wrap(key: Uint8Array, context: string): Promise<Uint8Array> {
    return gcmSeal(this.key, key, context);
  }

  async unwrap(wrapped: Uint8Array, context: string): Promise<Uint8Array> {
    return gcmOpen(this.key, wrapped, context);
  }
}

/** KMS's refusals a person must fix (a policy, the key's id, a disabled or deleted key), said as such. */
const KMS_REFUSALS = new Set(['AccessDeniedException', 'NotFoundException', 'DisabledException', 'KMSInvalidStateException']);

/** A KMS key (id, ARN or alias) wraps the data keys; the caller needs kms:Encrypt and kms:Decrypt on it. */
export class KmsMasterKey implements KeyWrapper {
  readonly name: string;
  constructor(
    private readonly kms: KMSClient,
    private readonly keyId: string,
  ) {
    this.name = `kms:${keyId}`;
  }

  async wrap(key: Uint8Array, context: string): Promise<Uint8Array> {
    const out = await this.kms
      .send(new EncryptCommand({ KeyId: this.keyId, Plaintext: key, EncryptionContext: { subject: context } }))
      .catch(this.refusal('Encrypt', context));
    return out.CiphertextBlob!;
  }

  async unwrap(wrapped: Uint8Array, context: string): Promise<Uint8Array> {
    const out = await this.kms
      .send(new DecryptCommand({ KeyId: this.keyId, CiphertextBlob: wrapped, EncryptionContext: { subject: context } }))
      .catch(this.refusal('Decrypt', context));
    return out.Plaintext!;
  }

  /** Rethrows a KMS error, a refusal as one line saying which key and what the role needs. */
  private refusal(action: string, context: string): (err: Error) => never {
    return (err) => {
      if (!KMS_REFUSALS.has(err.name)) throw err;
      throw new ConfigError(
        `KMS refused kms:${action} with ${this.keyId} for the data key of ${context} (${err.name}: ${err.message}): ${ENV.kmsKeyId} must name an enabled key on which this role has kms:Encrypt and kms:Decrypt (its IAM policy and the key's policy)`,
      );
    };
  }
}

/** The master key this environment names: a KMS key on AWS, else a local master key file. */
export function masterKeyFrom(env: Record<string, string | undefined>): KeyWrapper {
  const kmsKeyId = env[ENV.kmsKeyId];
  if (kmsKeyId) return new KmsMasterKey(new KMSClient({ region: env.AWS_REGION ?? 'eu-west-2' }), kmsKeyId);
  const file = env[ENV.masterKeyFile];
  if (file) return LocalMasterKey.fromFile(file);
  throw new ConfigError(`set ${ENV.kmsKeyId} (AWS) or ${ENV.masterKeyFile} (local) to the master key that wraps the personal-data keys`);
}

/** The key store this environment names (TOTES_KEYS_BUCKET and a master key), or null when it names none. */
export function subjectKeysFrom(env: Record<string, string | undefined>, s3: S3Client): SubjectKeys | null {
  const bucket = env[ENV.keysBucket];
  return bucket ? new SubjectKeys(s3, bucket, masterKeyFrom(env)) : null;
}
