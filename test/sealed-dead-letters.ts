/**
 * A processed bucket holding dead letters whose personal values are sealed as capture seals
 * them, and the key store they were sealed under (s3rver and a local master key file): what
 * `totes dead-letters` and the dashboard's panel are tested on.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { seal } from '../formats/personal-data.ts';
import { s3Client } from '../lib/aws.ts';
import { freePort, type LocalS3, startS3, tempDir } from '../local/servers.ts';
import { LocalMasterKey } from '../stores/key-wrappers.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { SubjectKeys } from '../stores/subject-keys.ts';

export const STAFF = { kind: 'staff', id: 7 } as const;
export const NAME = { first_name: 'Philomena', last_name: 'Ashcroft-Vane', email_address: 'philomena.ashcroft-vane@terrifictotes.com' };
/** The newest dead letter: staff 7's update, set aside for its e-mail address. */
export const STAFF_LETTER = 'dead-letter/shardId-000000000000/000000000000000000000000000000000000000000000000000000000200.json';
/** The older one, on another shard: a line that is no JSON, holding a sealed value. */
export const MALFORMED_LETTER = 'dead-letter/shardId-000000000001/000000000000000000000000000000000000000000000000000000000100.json';

export interface SealedDeadLetters {
  s3Endpoint: string;
  s3: S3Client;
  masterKeyFile: string;
  /** A key store as a separate process would open it (keys kept in memory `cacheMs`). */
  keys(cacheMs?: number): SubjectKeys;
  stop(): Promise<void>;
}

export async function startSealedDeadLetters(): Promise<SealedDeadLetters> {
  const s3rver: LocalS3 = await startS3({ port: await freePort(), buckets: ['processed', 'keys'] });
  const s3 = s3Client({ s3Endpoint: s3rver.endpoint });
  const dir = tempDir('dead-letter-keys');
  const masterKeyFile = join(dir, 'master.key');
  const keys = (cacheMs?: number) => new SubjectKeys(s3, 'keys', LocalMasterKey.fromFile(masterKeyFile, true), cacheMs);
  const { version, key } = (await keys().current(STAFF))!;
  const sealed = (text: string) => seal(text, STAFF, version, key);
  const store = new MicroBatchStore(s3, 'processed');

  await store.writeDeadLetter({
    shard: 'shardId-000000000001',
    sequenceNumber: '100',
    reason: 'not JSON: Unexpected token',
    payload: `{"v":1,"kind":"change","table":"staff","after":{"first_name":"${sealed(NAME.first_name)}"`,
    setAside: [{ table: 'staff', key: null, column: null, value: null, reason: 'not JSON: Unexpected token' }],
    at: new Date().toISOString(),
  });
  // newer by more than S3's one-second LastModified
  await new Promise((r) => setTimeout(r, 1_100));
  const after = {
    staff_id: 7,
    first_name: sealed(NAME.first_name),
    last_name: sealed(NAME.last_name),
    department_id: 2,
    email_address: sealed(NAME.email_address),
    created_at: '2022-11-03 14:20:51.563',
    last_updated: '2026-12-07 23:10:00.123',
  };
  const event = {
    v: 1,
    kind: 'change',
    op: 'u',
    table: 'staff',
    key: { staff_id: 7 },
    before: null,
    after,
    source: { lsn: '0/16B3748', pos: 0, xid: 750, commitTime: '2026-12-07T23:10:00.123456Z' },
  };
  const reason = 'email_address: longer than dim_staff.email_address holds';
  await store.writeDeadLetter({
    shard: 'shardId-000000000000',
    sequenceNumber: '200',
    reason,
    payload: JSON.stringify(event),
    setAside: [{ table: 'staff', key: 7, column: 'email_address', value: after.email_address, reason }],
    at: new Date().toISOString(),
  });
  return {
    s3Endpoint: s3rver.endpoint,
    s3,
    masterKeyFile,
    keys,
    async stop() {
      s3.destroy();
      await s3rver.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
