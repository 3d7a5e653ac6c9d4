/** Capture's sealing: personal values sealed under their row's subject, others untouched, a value sealed once per key. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../formats/change-event.ts';
import { s3Client } from '../lib/aws.ts';
import { freePort, startS3, type LocalS3 } from '../local/servers.ts';
import { ERASED } from '../formats/personal-data.ts';
import { LocalMasterKey } from '../stores/key-wrappers.ts';
import { SubjectKeys } from '../stores/subject-keys.ts';
import { changeEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { EventSealer } from './event-sealer.ts';

const SOURCE = { lsn: '0/16B3748', pos: 0, xid: 1, commitTime: '2024-05-01T09:15:02.123456Z' };
const staff = (id: number, first_name: string): ChangeEvent =>
  changeEvent(
    'staff',
    'u',
    { staff_id: id, first_name, last_name: 'Franey', department_id: 2, email_address: `${first_name}@terrifictotes.com`, created_at: 'x', last_updated: 'x' },
    SOURCE,
  );

describe('EventSealer', () => {
  let s3rver: LocalS3;
  let dir: string;
  let keys: SubjectKeys;
  beforeAll(async () => {
    s3rver = await startS3({ port: await freePort(), buckets: ['keys'] });
    dir = mkdtempSync(join(tmpdir(), 'totes-sealer-test-'));
    keys = new SubjectKeys(s3Client({ s3Endpoint: s3rver.endpoint }), 'keys', LocalMasterKey.fromFile(join(dir, 'master.key'), true));
  });
  afterAll(async () => {
    await s3rver?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('seals the personal values of a row under its subject, leaves the rest, and passes other tables as they are', async () => {
    const sealer = new EventSealer(keys);
    const order = salesOrderChange(1);
    expect(sealer.seal(order)).toBe(order);
    const sealed = (await sealer.seal(staff(5, 'Jeremie'))).after!;
    expect(sealed).toMatchObject({ staff_id: 5, last_name: expect.stringMatching(/^pd1:staff:5:1:/), department_id: 2, created_at: 'x' });
    expect(await keys.open(sealed.first_name as string)).toBe('Jeremie');
    expect(await keys.open(sealed.email_address as string)).toBe('Jeremie@terrifictotes.com');
    // the subject's key is cached now: the next change is sealed without waiting
    const next = sealer.seal(staff(5, 'Jeremie'));
    expect(next).not.toBeInstanceOf(Promise);
    expect((next as ChangeEvent).after!.first_name).toBe(sealed.first_name);
  });

  it('seals a value once under a key, and an erased subject’s values as erased, never under a new key', async () => {
    const sealer = new EventSealer(keys);
    const first = (await sealer.seal(staff(6, 'Ana'))).after!;
    expect((await sealer.seal(staff(6, 'Ana'))).after!.first_name).toBe(first.first_name);
    expect((await sealer.seal(staff(6, 'Imani'))).after!.first_name).not.toBe(first.first_name);
    await new SubjectKeys(s3Client({ s3Endpoint: s3rver.endpoint }), 'keys', LocalMasterKey.fromFile(join(dir, 'master.key'))).deleteKey({
      kind: 'staff',
      id: 6,
    });
    const fresh = new EventSealer(new SubjectKeys(s3Client({ s3Endpoint: s3rver.endpoint }), 'keys', LocalMasterKey.fromFile(join(dir, 'master.key'))));
    expect((await fresh.seal(staff(6, 'Ana'))).after).toMatchObject({
      staff_id: 6,
      first_name: ERASED,
      last_name: ERASED,
      email_address: ERASED,
      department_id: 2,
    });
  });
});
