/**
 * KmsMasterKey over KMS's own wire protocol, with the AWS SDK's client as on AWS. Against moto's
 * KMS server (test/kms-emulator.ts; skipped, saying so, where the machine has none): a data key wrapped and unwrapped bound to its
 * subject, a key store whose keys it wraps, and a key id naming no key refused in one line. KMS refusing
 * access (AccessDeniedException, an IAM or key policy without kms:Decrypt) is a fault moto does
 * not answer as KMS does, so that one is a stand-in: a local server speaking KMS's JSON protocol
 * that refuses every call as KMS words it; it checks our request and our handling of the answer,
 * not KMS itself.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERASED, seal } from '../formats/personal-data.ts';
import { s3Client } from '../lib/aws.ts';
import { ConfigError } from '../lib/config.ts';
import { describeFatal } from '../lib/fatal.ts';
import { freePort, type LocalS3, startS3 } from '../local/servers.ts';
import { hasKmsEmulator, type KmsEmulator, kmsAt, startKmsEmulator } from '../test/kms-emulator.ts';
import { KmsMasterKey } from './key-wrappers.ts';
import { SubjectKeys } from './subject-keys.ts';

describe.skipIf(!hasKmsEmulator)('KmsMasterKey against a KMS emulator (moto)', () => {
  let emulator: KmsEmulator;
  let kms: KMSClient;
  let keyId: string;
  let s3rver: LocalS3;
  let s3: S3Client;
  beforeAll(async () => {
    emulator = await startKmsEmulator();
    ({ kms, keyId } = emulator);
    s3rver = await startS3({ port: await freePort(), buckets: ['keys'] });
    s3 = s3Client({ s3Endpoint: s3rver.endpoint });
  });
  afterAll(async () => {
    emulator?.stop();
    s3?.destroy();
    await s3rver?.stop();
  });

  it('wraps a data key under the KMS key, bound to its subject: it unwraps for that subject and version only', async () => {
    const master = new KmsMasterKey(kms, keyId);
    const key = Buffer.alloc(32, 7);
    const wrapped = await master.wrap(key, 'staff:7:1');
    expect(Buffer.from(wrapped).includes(key)).toBe(false);
    expect(Buffer.from(await master.unwrap(wrapped, 'staff:7:1'))).toEqual(key);
    await expect(master.unwrap(wrapped, 'staff:8:1')).rejects.toThrow();
    await expect(master.unwrap(wrapped, 'staff:7:2')).rejects.toThrow();
  });

  it('wraps the key store’s keys: a value sealed in one process opens in another, and reads as erased once the key is deleted', async () => {
    const subject = { kind: 'staff', id: 21 } as const;
    const capture = new SubjectKeys(s3, 'keys', new KmsMasterKey(kms, keyId));
    const { version, key } = (await capture.current(subject))!;
    const sealed = seal('Ada Lovelace', subject, version, key);
    expect(await capture.record(subject)).toMatchObject({ wrappedBy: `kms:${keyId}`, erasedAt: null });
    expect(await new SubjectKeys(s3, 'keys', new KmsMasterKey(kms, keyId)).open(sealed)).toBe('Ada Lovelace');
    await capture.deleteKey(subject);
    expect(await new SubjectKeys(s3, 'keys', new KmsMasterKey(kms, keyId)).open(sealed)).toBe(ERASED);
  });

  it('a key id that names no key (a wrong TOTES_KMS_KEY_ID) is refused in one line naming it and what it must name', async () => {
    const refused = new KmsMasterKey(kms, 'alias/no-such-key').wrap(Buffer.alloc(32), 'staff:7:1');
    await expect(refused).rejects.toThrow(ConfigError);
    await expect(refused).rejects.toThrow(
      /^KMS refused kms:Encrypt with alias\/no-such-key for the data key of staff:7:1 \(NotFoundException: .*TOTES_KMS_KEY_ID must name/,
    );
  });
});

describe('KmsMasterKey when KMS refuses access (a stand-in for KMS)', () => {
  const DENIED =
    'User: arn:aws:sts::123456789012:assumed-role/totes-loader/task is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:eu-west-2:123456789012:key/1234abcd because no identity-based policy allows the kms:Decrypt action';
  let server: Server;
  let kms: KMSClient;
  const requests: { headers: IncomingHttpHeaders; body: Record<string, unknown> }[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        requests.push({ headers: req.headers, body: JSON.parse(body) });
        res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': 'stand-in' });
        res.end(JSON.stringify({ __type: 'AccessDeniedException', message: DENIED }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    kms = kmsAt(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });
  afterAll(async () => {
    kms?.destroy();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('says in one line which key refused which call for which subject, and what the role needs', async () => {
    const master = new KmsMasterKey(kms, 'alias/totes-keys');
    const refused = master.unwrap(Buffer.from('wrapped'), 'staff:7:1');
    await expect(refused).rejects.toThrow(ConfigError);
    const { line, exitCode } = describeFatal(await refused.catch((err: unknown) => err));
    expect(line).toBe(
      `configuration error: KMS refused kms:Decrypt with alias/totes-keys for the data key of staff:7:1 (AccessDeniedException: ${DENIED}): TOTES_KMS_KEY_ID must name an enabled key on which this role has kms:Encrypt and kms:Decrypt (its IAM policy and the key's policy)`,
    );
    expect(exitCode).toBe(2);
    // what went over the wire: KMS's Decrypt, with the key and the subject's encryption context
    expect(requests.at(-1)?.headers['x-amz-target']).toBe('TrentService.Decrypt');
    expect(requests.at(-1)?.body).toEqual({
      KeyId: 'alias/totes-keys',
      CiphertextBlob: Buffer.from('wrapped').toString('base64'),
      EncryptionContext: { subject: 'staff:7:1' },
    });
    await expect(master.wrap(Buffer.alloc(32), 'staff:7:1')).rejects.toThrow(/^KMS refused kms:Encrypt with alias\/totes-keys/);
    expect(requests.at(-1)?.headers['x-amz-target']).toBe('TrentService.Encrypt');
  });
});
