/** The personal-data key store against s3rver: one key per subject, shared by every process, and gone for good once deleted. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERASED, seal } from '../formats/personal-data.ts';
import { s3Client } from '../lib/aws.ts';
import { ConfigError } from '../lib/config.ts';
import { freePort, startS3, type LocalS3 } from '../local/servers.ts';
import { LocalMasterKey } from './key-wrappers.ts';
import { type KeyWrapper, openRows, SubjectKeys } from './subject-keys.ts';

describe('SubjectKeys', () => {
  let s3rver: LocalS3;
  let s3: S3Client;
  let dir: string;
  let master: LocalMasterKey;
  beforeAll(async () => {
    s3rver = await startS3({ port: await freePort(), buckets: ['keys'] });
    s3 = s3Client({ s3Endpoint: s3rver.endpoint });
    dir = mkdtempSync(join(tmpdir(), 'totes-keys-test-'));
    master = LocalMasterKey.fromFile(join(dir, 'master.key'), true);
  });
  afterAll(async () => {
    s3?.destroy();
    await s3rver?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates one key per subject on first use, stored only wrapped, and every process reading the store opens its values', async () => {
    const capture = new SubjectKeys(s3, 'keys', master);
    const staff = { kind: 'staff', id: 11 } as const;
    const first = (await capture.current(staff))!;
    expect((await capture.current(staff))?.key).toEqual(first?.key);
    expect((await capture.current({ kind: 'staff', id: 12 }))?.key).not.toEqual(first?.key);
    const stored = await (await s3.send(new GetObjectCommand({ Bucket: 'keys', Key: 'subjects/staff/11.json' }))).Body!.transformToString();
    expect(stored).not.toContain(Buffer.from(first.key).toString('base64'));
    expect(stored).not.toContain(Buffer.from(first.key).toString('hex'));

    const loader = new SubjectKeys(s3, 'keys', LocalMasterKey.fromFile(join(dir, 'master.key')));
    const rows = [{ staff_id: 11, first_name: seal('Jeremie', staff, first.version, first.key), department_id: 2 }];
    await openRows(rows, loader);
    expect(rows).toEqual([{ staff_id: 11, first_name: 'Jeremie', department_id: 2 }]);
  });

  it('after deleteKey a value reads as erased everywhere: at once in a fresh process, and past the cache in one that held the key; the tombstone keeps the subject erased: no new key, for them or for one erased before any key', async () => {
    const subject = { kind: 'counterparty', id: 3 } as const;
    const writer = new SubjectKeys(s3, 'keys', master);
    const { version, key } = (await writer.current(subject))!;
    const sealed = seal('Ms Contact', subject, version, key);
    const running = new SubjectKeys(s3, 'keys', master, 200);
    expect(await running.open(sealed)).toBe('Ms Contact');

    expect(await new SubjectKeys(s3, 'keys', master).deleteKey(subject)).toMatchObject({ destroyed: true });
    expect(await new SubjectKeys(s3, 'keys', master).open(sealed)).toBe(ERASED);
    await new Promise((r) => setTimeout(r, 250));
    expect(await running.open(sealed)).toBe(ERASED);
    const first = await writer.record(subject);
    expect(await writer.deleteKey(subject)).toEqual({ destroyed: false, erasedAt: first?.erasedAt });

    const listed = (await writer.listSubjects()).find((r) => r.subject === 'counterparty:3');
    expect(listed).toMatchObject({ version, wrapped: null });
    expect(listed?.erasedAt).toEqual(expect.any(String));

    expect(await new SubjectKeys(s3, 'keys', master).current(subject)).toBeNull();
    expect(await new SubjectKeys(s3, 'keys', master).open(sealed)).toBe(ERASED);
    const never = { kind: 'staff', id: 99 } as const;
    expect(await writer.deleteKey(never)).toMatchObject({ destroyed: false });
    expect(await new SubjectKeys(s3, 'keys', master).current(never)).toBeNull();
  });

  it('answers from its cache without waiting once it has read a key, reads the store again past the cache but unwraps only a changed key, and opens many rows with one look-up per key', async () => {
    let unwraps = 0;
    const counted: KeyWrapper = {
      name: master.name,
      wrap: (key, context) => master.wrap(key, context),
      unwrap: (wrapped, context) => {
        unwraps++;
        return master.unwrap(wrapped, context);
      },
    };
    const subject = { kind: 'staff', id: 31 } as const;
    const { version, key } = (await new SubjectKeys(s3, 'keys', master).current(subject))!;
    const keys = new SubjectKeys(s3, 'keys', counted, 1_000);
    expect(keys.currentCached(subject)).toBeUndefined();
    await keys.current(subject);
    expect(keys.currentCached(subject)).toEqual({ version, key });
    await new Promise((r) => setTimeout(r, 1_050));
    expect(keys.currentCached(subject)).toBeUndefined();
    expect((await keys.current(subject))?.key).toEqual(key);
    expect(unwraps).toBe(1);

    const other = { kind: 'staff', id: 32 } as const;
    const second = (await new SubjectKeys(s3, 'keys', master).current(other))!;
    const rows = Array.from({ length: 50 }, (_, i) => ({
      staff_id: i % 2 ? 31 : 32,
      first_name: i % 2 ? seal(`Ana${i}`, subject, version, key) : seal(`Imani${i}`, other, second.version, second.key),
    }));
    await openRows(rows, keys);
    expect(rows.map((r) => r.first_name)).toEqual(Array.from({ length: 50 }, (_, i) => (i % 2 ? `Ana${i}` : `Imani${i}`)));
    expect(unwraps).toBe(2);

    await new SubjectKeys(s3, 'keys', master).deleteKey(subject);
    await new Promise((r) => setTimeout(r, 1_050));
    await keys.current(subject);
    expect(keys.currentCached(subject)).toBeNull();
  });

  it('refuses to be read with another master key, and a sealed value without a key store stops the load', async () => {
    const subject = { kind: 'staff', id: 21 } as const;
    const { version, key } = (await new SubjectKeys(s3, 'keys', master).current(subject))!;
    const other = LocalMasterKey.fromFile(join(dir, 'other.key'), true);
    await expect(new SubjectKeys(s3, 'keys', other).open(seal('x', subject, version, key))).rejects.toThrow();
    await expect(openRows([{ first_name: seal('x', subject, version, key) }], null)).rejects.toThrow(ConfigError);
  });
});
