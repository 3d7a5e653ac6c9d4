/**
 * A source value the warehouse cannot hold (a numeric NaN, which numeric(10,2) takes in the
 * source) is set aside as a dead letter naming its row, column and value; its shard's watermark
 * moves on, the row keeps its last good version, and the correction loads as any change.
 */
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeadLetter } from '../formats/manifest.ts';
import pg from '../lib/pg.ts';
import { startTestPipeline, type TestPipeline } from './pipeline-harness.ts';
import { until } from './until.ts';

describe('a value the warehouse cannot hold', () => {
  let t: TestPipeline;
  let wh: pg.Client;
  beforeAll(async () => {
    t = await startTestPipeline({ shards: 2, scale: 0.01 });
    wh = new pg.Client({ connectionString: t.warehouseUrl });
    await wh.connect();
  });
  afterAll(async () => {
    await wh?.end();
    await t?.stop();
  });

  /** Waits until every shard's watermark is past everything the source has written so far. */
  async function loadedThrough(what: string): Promise<void> {
    const { rows } = await t.sourcePool.query(`SELECT pg_current_wal_lsn()::text AS lsn`);
    await until(
      `${what}: the watermark past ${rows[0].lsn}`,
      async () => (await wh.query(`SELECT coalesce(watermark_lsn >= $1::pg_lsn, false) AS past FROM totes_freshness`, [rows[0].lsn])).rows[0]?.past === true,
      60_000,
      200,
    );
  }

  const price = async (id: number) =>
    (await wh.query(`SELECT unit_price::text FROM fact_sales_order_current WHERE sales_order_id = $1`, [id])).rows[0]?.unit_price ?? null;

  it('sets a numeric NaN aside, the shard goes on, and the corrected price loads', async () => {
    await until('the snapshot of sales orders 1 and 2', async () => (await price(1)) !== null && (await price(2)) !== null, 60_000, 200);
    const before = await price(1);

    await t.sourcePool.query(`UPDATE sales_order SET unit_price = 'NaN', last_updated = now() WHERE sales_order_id = 1`);
    await t.sourcePool.query(`UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() WHERE sales_order_id = 2`);
    await loadedThrough('the NaN');
    expect(await price(1)).toBe(before); // its last good version stands, never a NULL or a NaN
    expect((await wh.query(`SELECT count(*)::int AS n FROM fact_sales_order WHERE unit_price = 'NaN' OR unit_price IS NULL`)).rows[0].n).toBe(0);
    const units = await t.sourcePool.query(`SELECT units_sold FROM sales_order WHERE sales_order_id = 2`);
    expect((await wh.query(`SELECT units_sold FROM fact_sales_order_current WHERE sales_order_id = 2`)).rows[0].units_sold).toBe(units.rows[0].units_sold);

    const s3 = t.pipeline.s3;
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'processed', Prefix: 'dead-letter/' }));
    const letters: DeadLetter[] = await Promise.all(
      (listed.Contents ?? []).map(async (o) =>
        JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: 'processed', Key: o.Key! }))).Body!.transformToString()),
      ),
    );
    expect(letters.flatMap((l) => l.setAside)).toEqual([
      { table: 'sales_order', key: 1, column: 'unit_price', value: 'NaN', reason: 'unit_price: not a numeric(10,2): "NaN"' },
    ]);

    await t.sourcePool.query(`UPDATE sales_order SET unit_price = 3.33, last_updated = now() WHERE sales_order_id = 1`);
    await loadedThrough('the correction');
    expect(await price(1)).toBe('3.33');
    expect(t.pipeline.processor.metrics.deadLetters).toBe(1);
  });
});
