/**
 * verify's own opening of the archive's sealed values, against the key store the services write
 * (s3rver, and for KMS moto's KMS server, test/kms-emulator.ts): a value opens to its text, an
 * erased subject's to the marker, and a store verify cannot read with the master key it was
 * given stops it in one line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seal, type Subject } from '../formats/personal-data.ts';
import { s3Client } from '../lib/aws.ts';
import { ConfigError } from '../lib/config.ts';
import { FatalError } from '../lib/fatal.ts';
import { freePort, type LocalS3, startS3 } from '../local/servers.ts';
import { KmsMasterKey, LocalMasterKey } from '../stores/key-wrappers.ts';
import { type KeyWrapper, SubjectKeys } from '../stores/subject-keys.ts';
import { EMULATOR_CREDENTIALS, hasKmsEmulator, type KmsEmulator, startKmsEmulator } from '../test/kms-emulator.ts';
import { type KeyStoreAt, SealedValues } from './sealed-values.ts';

describe('verify: sealed values opened through the key store', () => {
  let s3rver: LocalS3;
  let s3: S3Client;
  let dir: string;
  let emulator: KmsEmulator | undefined;
  const saved = { ...process.env };
  const KMS_ENV = ['AWS_ENDPOINT_URL_KMS', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'];
  beforeAll(async () => {
    s3rver = await startS3({ port: await freePort(), buckets: ['keys'] });
    s3 = s3Client({ s3Endpoint: s3rver.endpoint });
    dir = mkdtempSync(join(tmpdir(), 'totes-verify-sealed-'));
    if (!hasKmsEmulator) return;
    emulator = await startKmsEmulator();
    // verify's KMS client is the SDK's default one, pointed at the emulator as the SDK lets any client be
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_KMS: emulator.endpoint,
      AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
    });
  });
  afterAll(async () => {
    emulator?.stop();
    for (const name of KMS_ENV) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
    s3?.destroy();
    await s3rver?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A value of `subject` sealed as capture seals it, under a key the store wraps with `master`. */
  const sealedBy = async (master: KeyWrapper, subject: Subject, text: string) => {
    const { version, key } = (await new SubjectKeys(s3, 'keys', master).current(subject))!;
    return seal(text, subject, version, key);
  };

  it('opens a value with a local master key, an erased subject’s as the marker, and stops on a master key that is not the store’s', async () => {
    const masterKeyFile = join(dir, 'master.key');
    const master = LocalMasterKey.fromFile(masterKeyFile, true);
    const ada = await sealedBy(master, { kind: 'staff', id: 5 }, 'Ada');
    const store: KeyStoreAt = { bucket: 'keys', s3Endpoint: s3rver.endpoint, masterKeyFile };
    const open = (value: string, at = store) => {
      const sealed = new SealedValues(at);
      return sealed.open(value, 'dim_staff 5’s first_name').finally(() => sealed.close());
    };
    expect(await open(ada)).toBe('Ada');

    const other = join(dir, 'other.key');
    LocalMasterKey.fromFile(other, true);
    await expect(open(ada, { ...store, masterKeyFile: other })).rejects.toThrow(FatalError);
    await expect(open(ada, { ...store, masterKeyFile: other })).rejects.toThrow(/^could not unwrap staff 5's key with local/);
    await expect(open(ada, { ...store, masterKeyFile: undefined })).rejects.toThrow(ConfigError);
    const unknown = seal('Grace', { kind: 'staff', id: 99 }, 1, Buffer.alloc(32));
    await expect(open(unknown)).rejects.toThrow(/holds no key 1 of staff 99, which sealed dim_staff 5’s first_name/);

    await new SubjectKeys(s3, 'keys', master).deleteKey({ kind: 'staff', id: 5 });
    expect(await open(ada)).toBe('[erased]');
  });

  it.skipIf(!hasKmsEmulator)('opens a value whose key KMS wraps (moto), and names a store wrapped by another master key', async () => {
    const grace = await sealedBy(new KmsMasterKey(emulator!.kms, emulator!.keyId), { kind: 'staff', id: 6 }, 'Grace');
    const sealed = new SealedValues({ bucket: 'keys', s3Endpoint: s3rver.endpoint, kmsKeyId: emulator!.keyId });
    try {
      expect(await sealed.open(grace, 'dim_staff 6’s first_name')).toBe('Grace');
    } finally {
      sealed.close();
    }
    const local = new SealedValues({ bucket: 'keys', s3Endpoint: s3rver.endpoint, masterKeyFile: join(dir, 'master.key') });
    await expect(local.open(grace, 'dim_staff 6’s first_name')).rejects.toThrow(
      `staff 6's key in bucket "keys" is wrapped by kms:${emulator!.keyId}, not local`,
    );
    local.close();
  });
});
