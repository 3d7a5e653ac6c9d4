/**
 * verify's tombstone check on a warehouse the loader built from a stream the archive holds: it
 * finds nothing there, and names a deleted dimension row or a fact delete version that does not
 * hold the values it ends, column by column.
 */
import { gzipSync } from 'node:zlib';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent, EventSource, RowsEndEvent } from '../formats/change-event.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import { s3Client } from '../lib/aws.ts';
import type pg from '../lib/pg.ts';
import { poolFor } from '../lib/pg.ts';
import { PostgresWarehouse } from '../loader/warehouse.ts';
import { mapEvents } from '../processors/transform.ts';
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

const STREAM: (ChangeEvent | RowsEndEvent)[] = [
  design(1, 'one', at('1/10')),
  design(2, 'two', at('1/12')),
  changeEvent('design', 'd', { design_id: 1 }, at('1/14')),
  salesOrderChange(1, 'c', { units_sold: 10, design_id: 2 }, at('1/16')),
  salesOrderChange(1, 'd', {}, at('1/18')),
  { v: 1, kind: 'truncate', table: 'design', source: at('1/20') },
  // a value as the archive holds a personal one: sealed, which verify cannot open
  design(3, 'pd1:staff:1:1:c2VhbGVk', at('1/22')),
  changeEvent('design', 'd', { design_id: 3 }, at('1/24')),
];
const BUCKET = 'ingestion';

describe('verify: tombstones against the values they end', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  let aws: LocalAws;
  let s3: S3Client;
  let warehouse: pg.PoolClient;

  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: [BUCKET] });
    s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    const body = gzipSync(STREAM.map((e) => JSON.stringify(e)).join('\n'));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'raw/2024/05/01/09/archive-1.gz', Body: body }));
    db = await createDatabase('verify_tombstones');
    pool = poolFor(db.url, 2);
    const loader = new PostgresWarehouse(pool);
    await loader.ensureSchema();
    // one load per change: the loader's tombstones are right whichever way it was cut (loader/tombstones.pg.test.ts)
    for (const [i, event] of STREAM.entries()) {
      const { rows, ends } = mapEvents([event]);
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
  });

  const check = () => checkTombstones(warehouse, { bucket: BUCKET, s3Endpoint: aws.s3Endpoint });

  it('finds nothing on the tombstones the loader made', async () => {
    const deleted = await warehouse.query(`SELECT design_id, design_name, source_lsn::text FROM dim_design WHERE is_deleted ORDER BY 1`);
    expect(deleted.rows).toEqual([
      { design_id: 1, design_name: 'one', source_lsn: '1/14' },
      { design_id: 2, design_name: 'two', source_lsn: '1/20' },
      { design_id: 3, design_name: 'pd1:staff:1:1:c2VhbGVk', source_lsn: '1/24' },
    ]);
    expect(await check()).toEqual([]);
  });

  it('does not compare a value the archive holds sealed (the warehouse holds it opened)', async () => {
    await warehouse.query('BEGIN');
    try {
      await warehouse.query(`UPDATE dim_design SET design_name = 'Ada' WHERE design_id = 3`);
      expect(await check()).toEqual([]);
    } finally {
      await warehouse.query('ROLLBACK');
    }
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
});
