/**
 * TRUNCATE through the whole pipeline: captured, sent on every shard, archived, applied as the
 * end of every row of the tables it reached (RESTART IDENTITY, so new rows reuse the keys of
 * the ones it ended), verified against the source, and replayed from the archive to the same
 * warehouse, twice. Then a TRUNCATE in the middle of the first snapshot, after the payments
 * were read (naming transactions the warehouse has not seen) and before the transactions were.
 */
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEvent, type TruncateEvent } from '../formats/change-event.ts';
import pg, { inTransaction } from '../lib/pg.ts';
import { replayArchive } from '../replay/replay.ts';
import { sleep } from '../lib/retry.ts';
import { Simulator } from '../totesys/simulator.ts';
import { until } from './until.ts';
import { formatDifferences, verify } from '../verify/verify.ts';
import { archiveEverything, startTestPipeline, type TestPipeline } from './pipeline-harness.ts';

const SHARDS = 2;

describe('TRUNCATE end to end', () => {
  let t: TestPipeline;
  let wh: pg.Client;
  beforeAll(async () => {
    t = await startTestPipeline({ shards: SHARDS, scale: 0.02 });
    wh = new pg.Client({ connectionString: t.warehouseUrl });
    await wh.connect();
  });
  afterAll(async () => {
    await wh?.end();
    await t?.stop();
  });

  it('ends every row of the truncated tables, keeps what came after, archives and replays the same', async () => {
    // every seed row is read before the truncate, so the count of ends below is every order's
    await until('capture streaming, its snapshot done', () => t.pipeline.capture.metrics.state === 'streaming' && !t.pipeline.capture.snapshotPending);
    await new Simulator(t.sourcePool, 5).run({ changes: 150 });
    const ordersBefore = Number((await t.sourcePool.query('SELECT count(*) FROM sales_order')).rows[0].count);
    const paymentsBefore = Number((await t.sourcePool.query('SELECT count(*) FROM payment')).rows[0].count);
    await inTransaction(t.sourcePool, async (db) => {
      // reaches transaction and payment; ids start again at 1
      await db.query('TRUNCATE sales_order RESTART IDENTITY CASCADE');
      await db.query(
        `INSERT INTO sales_order (created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id,
                                  agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id)
         SELECT now(), now(), (SELECT min(design_id) FROM design), (SELECT min(staff_id) FROM staff), (SELECT min(counterparty_id) FROM counterparty),
                5, 2.50, 1, '2024-06-01', '2024-06-02', (SELECT min(address_id) FROM address)`,
      );
    });
    await new Simulator(t.sourcePool, 7).run({ changes: 150 });
    const result = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 });
    expect(formatDifferences(result.differences)).toBe('');

    const ends = await wh.query(
      `SELECT count(*) FILTER (WHERE source_op = 't')::int AS ended, count(DISTINCT sales_order_id) FILTER (WHERE source_op = 't')::int AS orders
         FROM fact_sales_order`,
    );
    expect(ends.rows[0]).toEqual({ ended: ordersBefore, orders: ordersBefore });
    const payments = await wh.query(`SELECT count(*)::int AS n FROM fact_payment WHERE source_op = 't'`);
    expect(payments.rows[0].n).toBe(paymentsBefore);
    // a key the truncate ended lives again, inserted in the same transaction after it
    const reused = await wh.query(`SELECT source_op, source_lsn::text AS lsn FROM fact_sales_order WHERE sales_order_id = 1 ORDER BY source_lsn, source_pos`);
    const end = reused.rows.findIndex((r) => r.source_op === 't');
    expect(reused.rows[end + 1]).toEqual({ source_op: 'c', lsn: reused.rows[end].lsn });
    const log = await wh.query(`SELECT load_table, rows_ended FROM totes_row_ends WHERE cause = 'truncate' ORDER BY source_pos`);
    expect(log.rows.map((r) => r.load_table).sort()).toEqual(['dim_transaction', 'fact_payment', 'fact_sales_order']);
    expect(t.pipeline.loader.metrics.truncates).toBe(3);
    expect(t.pipeline.capture.metrics.truncates).toBe(3);

    // the archive holds each truncate once per shard
    const p = t.pipeline;
    await archiveEverything(p);
    const archived: TruncateEvent[] = [];
    const listed = await p.s3.send(new ListObjectsV2Command({ Bucket: 'ingestion', Prefix: 'raw/' }));
    for (const o of listed.Contents ?? []) {
      const body = await (await p.s3.send(new GetObjectCommand({ Bucket: 'ingestion', Key: o.Key }))).Body!.transformToByteArray();
      for (const line of gunzipSync(body).toString('utf8').split('\n').filter(Boolean)) {
        const e = decodeEvent(line);
        if (e.kind === 'truncate') archived.push(e);
      }
    }
    expect(archived.map((e) => e.table).sort()).toEqual(['payment', 'payment', 'sales_order', 'sales_order', 'transaction', 'transaction']);

    const pool = new pg.Pool({ connectionString: t.warehouseUrl, max: 2 });
    try {
      const base = { s3: p.s3, bucket: 'ingestion', pool, schema: 'rebuilt', batchEvents: 500 };
      const rebuilt = await replayArchive({ ...base, freshSchema: true });
      expect(rebuilt.ends).toBeGreaterThanOrEqual(3);
      const check = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, schema: 'rebuilt', waitMs: 0 });
      expect(formatDifferences(check.differences)).toBe('');
      const versions = `SELECT count(*)::int AS n, count(*) FILTER (WHERE is_deleted)::int AS ended FROM rebuilt.fact_sales_order`;
      const once = (await pool.query(versions)).rows[0];
      const again = await replayArchive(base);
      expect(again.batchesSkipped).toBe(again.batches);
      // and the truncates replayed into a warehouse that has them already: nothing changes
      await replayArchive({ ...base, schema: 'public' });
      expect((await pool.query(versions)).rows[0]).toEqual(once);
      const live = await pool.query(`SELECT count(*)::int AS n FROM public.fact_sales_order WHERE source_op = 't'`);
      expect(live.rows[0].n).toBe(ordersBefore);
    } finally {
      await pool.end();
    }
  });

  it('ends what a TRUNCATE reached in the middle of the first snapshot, the rows only facts had named included', async () => {
    const mid = await startTestPipeline({ shards: SHARDS, scale: 0.02, seed: 9, start: false, capture: { snapshotChunkRows: 10 } });
    try {
      // (capture creates its state table as it starts)
      const done = async (table: string) =>
        (await mid.sourcePool.query(`SELECT done FROM totes_cdc.snapshot_progress WHERE table_name = $1`, [table]).catch(() => ({ rows: [] }))).rows[0]
          ?.done === true;
      await mid.pipeline.start();
      const deadline = Date.now() + 60_000;
      while (!(await done('payment'))) {
        if (Date.now() > deadline) throw new Error('the payments were not snapshotted within 60 s');
        await sleep(10);
      }
      await mid.sourcePool.query('TRUNCATE sales_order CASCADE');
      expect(await done('transaction'), 'the truncate came before the transactions were read').toBe(false);
      const result = await verify({ sourceUrl: mid.sourceUrl, warehouseUrl: mid.warehouseUrl, waitMs: 60_000 });
      expect(formatDifferences(result.differences)).toBe('');
      const c = new pg.Client({ connectionString: mid.warehouseUrl });
      await c.connect();
      try {
        // transactions only the payments had named: inferred members, ended where they stand
        const named = await c.query(`SELECT count(*)::int AS n FROM dim_transaction WHERE source_lsn = '0/0' AND is_deleted`);
        expect(named.rows[0].n).toBeGreaterThan(0);
      } finally {
        await c.end();
      }
    } finally {
      await mid.stop();
    }
  });
});
