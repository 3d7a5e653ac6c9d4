/**
 * Personal values the raw archive holds sealed (`pd1:...`, formats/personal-data.ts), opened by
 * verify through the key store the services use: its bucket (--keys-bucket) and the master key
 * their environment names (TOTES_KMS_KEY_ID on AWS, TOTES_MASTER_KEY_FILE locally), read and
 * unwrapped here by verify itself (it shares no code with what it checks). A value whose subject
 * is erased (their object a tombstone, the key gone) is expected as the warehouse's marker.
 */
import { readFileSync } from 'node:fs';
import { DecryptCommand, KMSClient } from '@aws-sdk/client-kms';
import type { S3Client } from '@aws-sdk/client-s3';
import { gcmOpen, parseSealed } from '../formats/personal-data.ts';
import { s3Client } from '../lib/aws.ts';
import { ConfigError, ENV } from '../lib/config.ts';
import { FatalError } from '../lib/fatal.ts';
import { ERASED_MARKER, readSubject } from './erasures.ts';

/** Where the key store is: its bucket, and the master key that wraps its keys (one of the two). */
export interface KeyStoreAt {
  bucket: string;
  s3Endpoint?: string;
  kmsKeyId?: string;
  masterKeyFile?: string;
}

export class SealedValues {
  /** Each subject's data key by `<kind>:<id>:<version>`, null when erased. */
  private readonly keys = new Map<string, Promise<Buffer | null>>();
  private s3: S3Client | null = null;
  private kms: KMSClient | null = null;

  constructor(private readonly store: KeyStoreAt | undefined) {}

  /** The clear text of a sealed value, or the erasure marker when its subject is erased; `what` names the value for an error. */
  async open(value: string, what: string): Promise<string> {
    const sealed = parseSealed(value);
    const context = `${sealed.subject.kind}:${sealed.subject.id}:${sealed.version}`;
    if (!this.keys.has(context)) this.keys.set(context, this.keyOf(context, what));
    const key = await this.keys.get(context)!;
    return key === null ? ERASED_MARKER : gcmOpen(key, sealed.body, sealed.header).toString('utf8');
  }

  close(): void {
    this.s3?.destroy();
    this.kms?.destroy();
  }

  private async keyOf(context: string, what: string): Promise<Buffer | null> {
    const store = this.store;
    if (!store?.kmsKeyId && !store?.masterKeyFile)
      throw new ConfigError(
        `the archive holds ${what} sealed (${context.replace(/:\d+$/, '')}): to open it give the key store's bucket with --keys-bucket (env ${ENV.keysBucket}) and its master key in ${ENV.kmsKeyId} (AWS) or ${ENV.masterKeyFile} (local)`,
      );
    const [kind, id, version] = context.split(':');
    this.s3 ??= s3Client({ s3Endpoint: store.s3Endpoint });
    const record = await readSubject(this.s3, store.bucket, `subjects/${kind}/${id}.json`);
    if (record?.erasedAt) return null;
    if (!record?.wrapped || record.version !== Number(version))
      throw new FatalError(
        `the key store in bucket "${store.bucket}" holds no key ${version} of ${kind} ${id}, which sealed ${what} in the archive: give the bucket the services write with --keys-bucket`,
      );
    const masterKey = store.kmsKeyId ? `kms:${store.kmsKeyId}` : 'local';
    if (record.wrappedBy !== masterKey)
      throw new ConfigError(
        `${kind} ${id}'s key in bucket "${store.bucket}" is wrapped by ${record.wrappedBy}, not ${masterKey}: give the master key the services use`,
      );
    try {
      return await this.unwrap(Buffer.from(record.wrapped, 'base64'), context);
    } catch (err) {
      throw new FatalError(`could not unwrap ${kind} ${id}'s key with ${masterKey} (${(err as Error).message}): give the master key the services use`);
    }
  }

  private async unwrap(wrapped: Buffer, context: string): Promise<Buffer> {
    const store = this.store!;
    if (!store.kmsKeyId) return gcmOpen(readFileSync(store.masterKeyFile!), wrapped, context);
    this.kms ??= new KMSClient({ region: process.env.AWS_REGION ?? 'eu-west-2' });
    const out = await this.kms.send(new DecryptCommand({ KeyId: store.kmsKeyId, CiphertextBlob: wrapped, EncryptionContext: { subject: context } }));
    return Buffer.from(out.Plaintext!);
  }
}
