/**
 * verify's tombstone check on a warehouse the loader built from a stream the archive holds: it
 * finds nothing there, and names a deleted dimension row or a fact delete version that does not
 * hold the values it ends, column by column; a deleted staff member's personal values, which the
 * archive holds sealed, opened through the key store (an erased one's expected erased).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent, EventSource, RowsEndEvent } from '../formats/change-event.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import { seal } from '../formats/personal-data.ts';
import { s3Client } from '../lib/aws.ts';
import { ConfigError } from '../lib/config.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { PostgresWarehouse } from '../loader/warehouse.ts';
import { mapEvents } from '../processors/transform.ts';
import { LocalMasterKey } from '../stores/key-wrappers.ts';
import { openRows, SubjectKeys } from '../stores/subject-keys.ts';
import { createDatabase, type LocalAws, startLocalAws } from '../test/harness.ts';
import { changeEvent, salesOrderChange } from '../test/kinesis-events.ts';
import { checkTombstones } from './tombstones.ts';

const at = (lsn: string, pos = 0): EventSource => ({ lsn, pos, xid: 1, commitTime: '2024-05-01T09:15:02.123456Z' });
const design = (id: number, name: string, source: EventSource) =>
  changeEvent(
    'design',
    'c',
    { design_id: id, created_at: '2024-05-01 09:15:02', last_updated: '2024-05-01 09:15:02', design_name: name, file_location: '/d', file_name: 'f.json' },
    source,
  );

const ADA = { first_name: 'Ada', last_name: 'Lovelace', email_address: 'ada.lovelace@terrifictotes.com' };
const GRACE = { first_name: 'Grace', last_name: 'Hopper', email_address: 'grace.hopper@terrifictotes.com' };
const KEYS_BUCKET = 'keys';

/** The changes as the archive holds them: staff members' personal values sealed under their keys, as capture seals them. */
async function stream(keys: SubjectKeys): Promise<(ChangeEvent | RowsEndEvent)[]> {
  const staff = async (id: number, name: typeof ADA, source: EventSource) => {
    const subject = { kind: 'staff', id } as const;
    const { version, key } = (await keys.current(subject))!;
    const sealed = Object.fromEntries(Object.entries(name).map(([c, v]) => [c, seal(v, subject, version, key)]));
    return changeEvent(
      'staff',
      'c',
      { staff_id: id, ...sealed, department_id: 1, created_at: '2024-05-01 09:15:02', last_updated: '2024-05-01 09:15:02' },
      source,
    );
  };
  return [
    design(1, 'one', at('1/10')),
    design(2, 'two', at('1/12')),
    changeEvent('design', 'd', { design_id: 1 }, at('1/14')),
    salesOrderChange(1, 'c', { units_sold: 10, design_id: 2 }, at('1/16')),
    salesOrderChange(1, 'd', {}, at('1/18')),
    { v: 1, kind: 'truncate', table: 'design', source: at('1/20') },
    await staff(1, ADA, at('1/22')),
    changeEvent('staff', 'd', { staff_id: 1 }, at('1/24')),
    await staff(2, GRACE, at('1/26')),
    changeEvent('staff', 'd', { staff_id: 2 }, at('1/28')),
  ];
}
const BUCKET = 'ingestion';

describe('verify: tombstones against the values they end', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  let aws: LocalAws;
  let s3: S3Client;
  let warehouse: pg.PoolClient;
  let keyDir: string;
  let keys: SubjectKeys;

  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: [BUCKET, KEYS_BUCKET] });
    s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    keyDir = mkdtempSync(join(tmpdir(), 'totes-verify-keys-'));
    keys = new SubjectKeys(s3, KEYS_BUCKET, LocalMasterKey.fromFile(join(keyDir, 'master.key'), true));
    const STREAM = await stream(keys);
    const body = gzipSync(STREAM.map((e) => JSON.stringify(e)).join('\n'));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'raw/2024/05/01/09/archive-1.gz', Body: body }));
    db = await createDatabase('verify_tombstones');
    pool = poolFor(db.url, 2);
    const loader = new PostgresWarehouse(pool);
    await loader.ensureSchema();
    // one load per change: the loader's tombstones are right whichever way it was cut (loader/tombstones.pg.test.ts)
    for (const [i, event] of STREAM.entries()) {
      const { rows, ends } = mapEvents([event]);
      for (const tableRows of Object.values(rows)) await openRows(tableRows, keys);
      await loader.loadTables({ batchKey: `b${i}`, shard: 's', events: 1, ends }, new Map(Object.entries(rows)) as Map<LoadTableName, LoadRow[]>);
    }
    warehouse = await pool.connect();
  });
  afterAll(async () => {
    warehouse?.release();
    await pool?.end();
    await db?.drop();
    s3?.destroy();
    await aws?.stop();
    rmSync(keyDir, { recursive: true, force: true });
  });

  const check = () =>
    checkTombstones(
      warehouse,
      { bucket: BUCKET, s3Endpoint: aws.s3Endpoint },
      { bucket: KEYS_BUCKET, s3Endpoint: aws.s3Endpoint, masterKeyFile: join(keyDir, 'master.key') },
    );

  it('finds nothing on the tombstones the loader made', async () => {
    const deleted = await warehouse.query(`SELECT design_id, design_name, source_lsn::text FROM dim_design WHERE is_deleted ORDER BY 1`);
    expect(deleted.rows).toEqual([
      { design_id: 1, design_name: 'one', source_lsn: '1/14' },
      { design_id: 2, design_name: 'two', source_lsn: '1/20' },
    ]);
    const staff = await warehouse.query(`SELECT staff_id, first_name, email_address FROM dim_staff WHERE is_deleted ORDER BY 1`);
    expect(staff.rows).toEqual([
      { staff_id: 1, first_name: ADA.first_name, email_address: ADA.email_address },
      { staff_id: 2, first_name: GRACE.first_name, email_address: GRACE.email_address },
    ]);
    expect(await check()).toEqual([]);
  });

  it('opens the values the archive holds sealed through the key store, and names a deleted staff member holding others', async () => {
    await warehouse.query('BEGIN');
    try {
      await warehouse.query(`UPDATE dim_staff SET last_name = 'Byron', email_address = NULL WHERE staff_id = 1`);
      expect(await check()).toEqual([
        { table: 'dim_staff', key: '1', column: 'last_name', expected: ADA.last_name, found: 'Byron' },
        { table: 'dim_staff', key: '1', column: 'email_address', expected: ADA.email_address, found: null },
      ]);
    } finally {
      await warehouse.query('ROLLBACK');
    }
  });

  it('without the key store, a sealed value ends the check with one line saying what to give', async () => {
    const withoutKeys = checkTombstones(warehouse, { bucket: BUCKET, s3Endpoint: aws.s3Endpoint });
    await expect(withoutKeys).rejects.toThrow(ConfigError);
    await expect(withoutKeys).rejects.toThrow(/dim_staff 1's last_name sealed \(staff:1\).*--keys-bucket.*TOTES_MASTER_KEY_FILE/);
  });

  it('names a tombstone that lost its values, and a fact delete version with values other than those it ends', async () => {
    await warehouse.query('BEGIN');
    try {
      await warehouse.query(`UPDATE dim_design SET design_name = NULL, file_name = NULL WHERE design_id = 1`);
      await warehouse.query(`UPDATE dim_design SET file_location = '/elsewhere' WHERE design_id = 2`);
      await warehouse.query(`UPDATE fact_sales_order SET units_sold = 0 WHERE sales_order_id = 1 AND is_deleted`);
      expect(await check()).toEqual([
        { table: 'fact_sales_order', key: '1@1/18:0', column: 'units_sold', expected: '10', found: '0' },
        { table: 'dim_design', key: '1', column: 'file_name', expected: 'f.json', found: null },
        { table: 'dim_design', key: '1', column: 'design_name', expected: 'one', found: null },
        { table: 'dim_design', key: '2', column: 'file_location', expected: '/d', found: '/elsewhere' },
      ]);
      // without the archive, the dimension rows are not checked; the fact versions are
      expect(await checkTombstones(warehouse)).toEqual([{ table: 'fact_sales_order', key: '1@1/18:0', column: 'units_sold', expected: '10', found: '0' }]);
    } finally {
      await warehouse.query('ROLLBACK');
    }
  });

  it('expects an erased staff member (key destroyed) erased: the marker passes, the values they had do not', async () => {
    await keys.deleteKey({ kind: 'staff', id: 2 });
    expect(await check()).toEqual(
      ['last_name', 'first_name', 'email_address'].map((column) => ({
        table: 'dim_staff',
        key: '2',
        column,
        expected: '[erased]',
        found: GRACE[column as keyof typeof GRACE],
      })),
    );
    await warehouse.query('BEGIN');
    try {
      // as `totes forget` leaves the warehouse
      await warehouse.query(`UPDATE dim_staff SET first_name = '[erased]', last_name = '[erased]', email_address = '[erased]' WHERE staff_id = 2`);
      expect(await check()).toEqual([]);
    } finally {
      await warehouse.query('ROLLBACK');
    }
  });
});
