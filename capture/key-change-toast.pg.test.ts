/**
 * A key change of a row whose TOASTed value it leaves unchanged, through the whole pipeline on
 * every source major: the source sends the value for neither key (the old key's tuple holds only
 * the key under the default replica identity, the new one marks it unchanged), so the new key
 * must take it from the old key's version. One case per table with a text column the warehouse
 * loads, and a row moved twice in one transaction; then the archive replayed to the same.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg, { inTransaction } from '../lib/pg.ts';
import { replayArchive } from '../replay/replay.ts';
import { type Difference, verify } from '../verify/verify.ts';
import { archiveEverything, startTestPipeline, type TestPipeline } from '../test/pipeline-harness.ts';
import { until } from '../test/until.ts';

/** Incompressible, so Postgres stores it out of line (TOAST): an update that leaves it alone does not send it. */
const toasted = () => randomBytes(6_000).toString('base64');

/** Per table: its key, the text column made large, and where the warehouse holds it (table, key column, column). */
const CASES = [
  { table: 'address', column: 'address_line_2', warehouse: ['dim_location', 'location_id', 'address_line_2'] },
  { table: 'department', column: 'location', warehouse: ['totes_department', 'department_id', 'location'] },
  { table: 'staff', column: 'email_address', warehouse: ['dim_staff', 'staff_id', 'email_address'] },
  { table: 'counterparty', column: 'counterparty_legal_name', warehouse: ['dim_counterparty', 'counterparty_id', 'counterparty_legal_name'] },
  { table: 'design', column: 'file_name', warehouse: ['dim_design', 'design_id', 'file_name'] },
  { table: 'purchase_order', column: 'item_code', warehouse: ['fact_purchase_order_current', 'purchase_order_id', 'item_code'] },
] as const;

const NEW_KEY = 9_000_000;

/** Where the warehouse differs from the truth (the values themselves are kilobytes long). */
const where = (differences: Difference[]) =>
  differences.map((d) => `${d.table} ${d.key} ${d.column}: ${d.found === null ? 'null' : `${d.found.length} chars`}`);

describe('a key change keeps an unchanged TOASTed value', () => {
  let t: TestPipeline;
  let wh: pg.Client;
  beforeAll(async () => {
    t = await startTestPipeline({ shards: 2, scale: 0.02 });
    wh = new pg.Client({ connectionString: t.warehouseUrl });
    await wh.connect();
  });
  afterAll(async () => {
    await wh?.end();
    await t?.stop();
  });

  it('for every table with a loaded text column, live and replayed from the archive', async () => {
    await until('capture streaming, its snapshot done', () => t.pipeline.capture.metrics.state === 'streaming' && !t.pipeline.capture.snapshotPending);
    const db = t.sourcePool;
    const values = new Map<string, string>();
    for (const { table, column } of CASES) {
      const value = toasted();
      values.set(table, value);
      await db.query(`UPDATE "${table}" SET "${column}" = $1 WHERE "${table}_id" = 2`, [value]);
      // the key change alone: the TOASTed value is unchanged, sent for neither key
      await db.query(`UPDATE "${table}" SET "${table}_id" = ${NEW_KEY + 2} WHERE "${table}_id" = 2`);
    }
    // twice in one transaction, with another column changed on the way: the second move's old key is the first's new one
    const twice = toasted();
    await db.query(`UPDATE address SET address_line_2 = $1 WHERE address_id = 3`, [twice]);
    await inTransaction(db, async (tx) => {
      await tx.query(`UPDATE address SET address_id = ${NEW_KEY + 3}, phone = '0113 496 0001' WHERE address_id = 3`);
      await tx.query(`UPDATE address SET address_id = ${NEW_KEY + 4} WHERE address_id = ${NEW_KEY + 3}`);
    });

    const result = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 });
    expect(where(result.differences)).toEqual([]);
    expect(result.ok).toBe(true);
    const held = async (schema: string) => {
      const found: Record<string, number | null> = {};
      for (const {
        table,
        warehouse: [target, key, column],
      } of CASES) {
        const r = await wh.query(`SELECT length("${column}") AS n FROM "${schema}"."${target}" WHERE "${key}" = ${NEW_KEY + 2}`);
        found[table] = r.rows[0]?.n ?? null;
      }
      const moved = await wh.query(`SELECT length(address_line_2) AS n, phone FROM "${schema}".dim_location WHERE location_id = ${NEW_KEY + 4}`);
      // both counterparties' legal address is derived from the moved address in the warehouse
      const legal = await wh.query(
        `SELECT DISTINCT length(counterparty_legal_address_line_2) AS n FROM "${schema}".dim_counterparty WHERE legal_address_id = ${NEW_KEY + 2}`,
      );
      return { found, moved: moved.rows[0], legal: legal.rows };
    };
    const expected = {
      found: Object.fromEntries(CASES.map(({ table }) => [table, values.get(table)!.length])),
      moved: { n: twice.length, phone: '0113 496 0001' },
      legal: [{ n: values.get('address')!.length }],
    };
    expect(await held('public')).toEqual(expected);
    expect(t.pipeline.processor.metrics.deadLetters).toBe(0);

    await archiveEverything(t.pipeline);
    const pool = new pg.Pool({ connectionString: t.warehouseUrl, max: 2 });
    try {
      await replayArchive({ s3: t.pipeline.s3, bucket: 'ingestion', pool, schema: 'rebuilt', freshSchema: true, batchEvents: 500 });
      const check = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, schema: 'rebuilt', waitMs: 0 });
      expect(where(check.differences)).toEqual([]);
      expect(await held('rebuilt')).toEqual(expected);
    } finally {
      await pool.end();
    }
  });
});
