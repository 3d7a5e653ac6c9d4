/**
 * End to end: seed, snapshot, stream inserts, updates and deletes through Kinesis, the
 * processor and the loader, and check the warehouse equals the truth with `verify`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Simulator } from '../totesys/simulator.ts';
import { verify, formatDifferences } from '../verify/verify.ts';
import { randomBytes } from 'node:crypto';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import pg from '../lib/pg.ts';
import { requestSnapshot } from '../capture/chunked-snapshot.ts';
import { startTestPipeline, type TestPipeline } from './pipeline-harness.ts';

describe('pipeline end to end', () => {
  let t: TestPipeline;
  beforeAll(async () => {
    t = await startTestPipeline({ shards: 2, scale: 0.02 });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('makes the warehouse equal the truth after simulated business and edge cases', async () => {
    const sim = new Simulator(t.sourcePool, 3);
    await sim.run({ changes: 400 });
    const db = t.sourcePool;
    // exactness: largest numeric(10,2), a whole-second timestamp, text that needs escaping
    await db.query(`UPDATE sales_order SET unit_price = 99999999.99, last_updated = '2024-06-30 23:59:59' WHERE sales_order_id = 1`);
    await db.query(`UPDATE address SET address_line_1 = $1, last_updated = '2024-07-01 00:00:00.001' WHERE address_id = 2`, [
      'O\'Brien "House"\\ \n Straße 東京 🧵',
    ]);
    await db.query(`UPDATE department SET location = 'Leds', last_updated = now() WHERE department_id = 1`);
    await db.query(`DELETE FROM sales_order WHERE sales_order_id = 2`);
    await db.query(`UPDATE payment SET paid = NOT paid, last_updated = now() WHERE payment_id = 3`);
    const result = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 });
    expect(formatDifferences(result.differences)).toBe('');
    expect(result.ok).toBe(true);

    const wh = new pg.Client({ connectionString: t.warehouseUrl });
    await wh.connect();
    try {
      const price = await wh.query(`SELECT unit_price::text, last_updated_time::text FROM fact_sales_order_current WHERE sales_order_id = 1`);
      expect(price.rows[0]).toEqual({ unit_price: '99999999.99', last_updated_time: '23:59:59' });
      const deleted = await wh.query(
        `SELECT source_op, is_deleted, units_sold FROM fact_sales_order WHERE sales_order_id = 2 ORDER BY source_lsn DESC, source_pos DESC LIMIT 1`,
      );
      expect(deleted.rows[0].source_op).toBe('d');
      expect(deleted.rows[0].is_deleted).toBe(true);
      expect(deleted.rows[0].units_sold).not.toBeNull(); // a delete version carries the values it ends
      const names = await wh.query(`SELECT currency_code, currency_name FROM dim_currency ORDER BY currency_id`);
      expect(names.rows).toEqual([
        { currency_code: 'GBP', currency_name: 'British Pound' },
        { currency_code: 'USD', currency_name: 'US Dollar' },
        { currency_code: 'EUR', currency_name: 'Euro' },
      ]);
    } finally {
      await wh.end();
    }
  });

  it('keeps an unchanged TOASTed value, carries a change over 1 MiB by claim check, re-reads tables under live writes without going stale, and survives a new column', async () => {
    const db = t.sourcePool;
    const big = randomBytes(150_000).toString('base64'); // incompressible: stored out of line
    await db.query(`UPDATE address SET address_line_2 = $1, last_updated = now() WHERE address_id = 3`, [big]);
    await db.query(`UPDATE address SET phone = '0113 496 0000', last_updated = now() WHERE address_id = 3`); // address_line_2 not sent
    const huge = randomBytes(1_100_000).toString('base64'); // an event over Kinesis's 1 MiB record limit
    await db.query(`UPDATE design SET file_location = $1, last_updated = now() WHERE design_id = 2`, [huge]);
    await db.query(`ALTER TABLE design ADD COLUMN colourway text`);
    await db.query(`UPDATE design SET colourway = 'teal', design_name = 'Teal Tote', last_updated = now() WHERE design_id = 1`);

    const slot = t.pipeline.capture['config'].slotName;
    const live = new Simulator(t.sourcePool, 11);
    const writing = live.run({ changes: 300, rate: 150 });
    await requestSnapshot(t.sourcePool, slot, ['sales_order', 'payment']);
    await writing;

    const result = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 });
    expect(formatDifferences(result.differences)).toBe('');
    const wh = new pg.Client({ connectionString: t.warehouseUrl });
    await wh.connect();
    try {
      const row = await wh.query(`SELECT length(address_line_2) AS n, phone FROM dim_location WHERE location_id = 3`);
      expect(row.rows[0]).toEqual({ n: big.length, phone: '0113 496 0000' });
      const design = await wh.query(`SELECT length(file_location) AS n FROM dim_design WHERE design_id = 2`);
      expect(design.rows[0].n).toBe(huge.length);
      const claimed = await t.pipeline.s3.send(new ListObjectsV2Command({ Bucket: 'ingestion', Prefix: 'oversize/design/' }));
      expect(claimed.KeyCount).toBe(1);
    } finally {
      await wh.end();
    }
    expect(t.pipeline.processor.metrics.deadLetters).toBe(0);
  });
});
