/**
 * verify as the oracle it claims to be: on a warehouse the pipeline built, it finds nothing;
 * with one wrong value in each of the 11 tables, a missing row and an extra one, it names each
 * by table, key and column; and it derives the current version of each fact itself, so a
 * `_current` view that does not show the latest version cannot hide a wrong one.
 * Each test works on its own copy of the warehouse, in a schema of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inTransaction, poolFor } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { STAR_TABLES, warehouseDdl } from '../loader/warehouse-schema.ts';
import { startTestPipeline, type TestPipeline } from '../test/pipeline-harness.ts';
import { Simulator } from '../totesys/simulator.ts';
import { type Difference, formatDifferences, verify } from './verify.ts';

let t: TestPipeline;
let warehouse: pg.Pool;
let copies = 0;

beforeAll(async () => {
  t = await startTestPipeline({ shards: 1, scale: 0.02 });
  await new Simulator(t.sourcePool, 5).run({ changes: 150 });
  const built = await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 });
  expect(formatDifferences(built.differences)).toBe('');
  await t.pipeline.capture.stop(); // nothing more changes the source's stream
  warehouse = poolFor(t.warehouseUrl, 2);
});
afterAll(async () => {
  await warehouse?.end();
  await t?.stop();
});

const FACT_IDS: Record<string, [key: string, recordId: string]> = {
  fact_sales_order: ['sales_order_id', 'sales_record_id'],
  fact_purchase_order: ['purchase_order_id', 'purchase_record_id'],
  fact_payment: ['payment_id', 'payment_record_id'],
};

/** A copy of the warehouse the pipeline built, in a schema of its own, with the same DDL (keys, views). */
async function copyOfWarehouse(): Promise<string> {
  const schema = `copy_${++copies}`;
  await inTransaction(warehouse, async (db) => {
    await db.query(warehouseDdl(schema));
    for (const table of STAR_TABLES) await db.query(`INSERT INTO "${schema}".${table} SELECT * FROM public.${table}`);
    for (const [table, [, recordId]] of Object.entries(FACT_IDS))
      await db.query(`SELECT setval(pg_get_serial_sequence('"${schema}".${table}', '${recordId}'), (SELECT max(${recordId}) FROM "${schema}".${table}))`);
  });
  return schema;
}

const check = (schema: string) => verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, schema, waitMs: 0 });
const one = async (sql: string, params: unknown[] = []) => (await warehouse.query(sql, params)).rows[0];
const byPlace = (diffs: Difference[]) => [...diffs].sort((a, b) => `${a.table} ${a.key} ${a.column}`.localeCompare(`${b.table} ${b.key} ${b.column}`));

/**
 * Set `column` of one row of `table` to `to` (SQL over the old value): the row with the lowest key
 * that verify compares (a dimension row that is no tombstone, a fact's current version). Returns
 * the difference verify must report: the value it had (the truth: verify passed on it) and the new one.
 */
async function corrupt(schema: string, table: string, keyColumn: string, column: string, to: string): Promise<Difference> {
  const t = `"${schema}".${table}`;
  const [factKey, recordId] = FACT_IDS[table] ?? [];
  const { key } = await one(
    factKey
      ? `SELECT min(${factKey})::text AS key FROM ${t}_current`
      : `SELECT min(${keyColumn})::text AS key FROM ${t}${table === 'dim_date' ? '' : ' WHERE NOT is_deleted'}`,
  );
  const where = factKey ? `${recordId} = (SELECT ${recordId} FROM ${t}_current WHERE ${factKey} = $1)` : `${keyColumn} = $1`;
  const before = await one(`SELECT ${column}::text AS v FROM ${t} WHERE ${where}`, [key]);
  const after = await one(`UPDATE ${t} SET ${column} = ${to} WHERE ${where} RETURNING ${column}::text AS v`, [key]);
  expect(after.v).not.toBe(before.v);
  return { table, key, column, expected: before.v, found: after.v };
}

describe('verify', () => {
  it('finds nothing to report in the warehouse the pipeline built, and counts every table', async () => {
    const result = await check(await copyOfWarehouse());
    expect(formatDifferences(result.differences)).toBe('');
    expect(result.ok).toBe(true);
    expect(result.tables.map((r) => r.table)).toEqual([...STAR_TABLES]);
    for (const r of result.tables) expect(r.rows, r.table).toBeGreaterThan(0);
  });

  it('names the table, key and column of one wrong value in each of the 11 tables, a missing row and an extra one', async () => {
    const s = await copyOfWarehouse();
    const expected = [
      await corrupt(s, 'dim_date', 'date_id', 'day_name', `'Funday'`),
      await corrupt(s, 'dim_staff', 'staff_id', 'first_name', `first_name || 'x'`),
      await corrupt(s, 'dim_location', 'location_id', 'phone', `'0161 555 0199'`),
      await corrupt(s, 'dim_counterparty', 'counterparty_id', 'counterparty_legal_city', `'Nowhere'`),
      await corrupt(s, 'dim_currency', 'currency_id', 'currency_name', `'Pound Sterling'`),
      await corrupt(s, 'dim_design', 'design_id', 'file_name', `'renamed.json'`),
      await corrupt(s, 'dim_payment_type', 'payment_type_id', 'payment_type_name', `'SALES_REFUND'`),
      await corrupt(s, 'dim_transaction', 'transaction_id', 'transaction_type', `CASE transaction_type WHEN 'SALE' THEN 'PURCHASE' ELSE 'SALE' END`),
      await corrupt(s, 'fact_sales_order', 'sales_order_id', 'unit_price', 'unit_price + 0.01'),
      await corrupt(s, 'fact_purchase_order', 'purchase_order_id', 'created_time', `created_time + interval '1 millisecond'`),
      await corrupt(s, 'fact_payment', 'payment_id', 'paid', 'NOT paid'),
    ];
    const { gone } = await one(`SELECT max(payment_id)::text AS gone FROM "${s}".fact_payment_current`);
    // a payment the warehouse lost (every version), a design it should not have
    await warehouse.query(`DELETE FROM "${s}".fact_payment WHERE payment_id = $1`, [gone]);
    expected.push({ table: 'fact_payment', key: gone, column: '(row)', expected: 'present', found: 'missing' });
    await warehouse.query(`INSERT INTO "${s}".dim_design (design_id, design_name, source_lsn) VALUES (999999, 'Phantom', '0/1')`);
    expected.push({ table: 'dim_design', key: '999999', column: '(row)', expected: 'absent', found: 'present' });
    // a date a fact references, gone from dim_date (the foreign key set aside, as a loader without one would)
    const { referenced } = await one(`SELECT max(payment_date)::text AS referenced FROM "${s}".fact_payment_current`);
    await inTransaction(warehouse, async (db) => {
      await db.query(`SET LOCAL session_replication_role = replica`);
      await db.query(`DELETE FROM "${s}".dim_date WHERE date_id = $1`, [referenced]);
    });
    expected.push({ table: 'dim_date', key: referenced, column: '(row)', expected: 'present', found: 'missing' });

    const result = await check(s);
    expect(result.ok).toBe(false);
    expect(byPlace(result.differences)).toEqual(byPlace(expected));
    expect(result.tables.map((r) => [r.table, r.differences])).toEqual(
      STAR_TABLES.map((table) => [table, table === 'dim_date' || table === 'dim_design' || table === 'fact_payment' ? 2 : 1]),
    );
    const [, , location] = expected;
    expect(formatDifferences(result.differences)).toContain(
      `dim_location  key=${location.key}  phone: expected ${JSON.stringify(location.expected)}, found "0161 555 0199"`,
    );
  });

  it("derives each fact's current version from its versions, so a view that does not show the latest cannot hide it", async () => {
    const s = await copyOfWarehouse();
    // the view frozen as it is now (as an unrefreshed materialized view would be), then a newer, wrong version
    await warehouse.query(`CREATE TABLE "${s}".frozen_payments AS SELECT * FROM "${s}".fact_payment_current;
      CREATE OR REPLACE VIEW "${s}".fact_payment_current AS SELECT * FROM "${s}".frozen_payments`);
    const latest = await one(`SELECT payment_id, payment_record_id, payment_amount::text FROM "${s}".fact_payment_current ORDER BY payment_id LIMIT 1`);
    const added = await one(
      `INSERT INTO "${s}".fact_payment (payment_id, created_date, created_time, last_updated_date, last_updated_time, transaction_id, counterparty_id,
         payment_amount, currency_id, payment_type_id, paid, payment_date, source_op, source_lsn, source_pos, source_commit_time)
       SELECT payment_id, created_date, created_time, last_updated_date, last_updated_time, transaction_id, counterparty_id,
         payment_amount + 1, currency_id, payment_type_id, paid, payment_date, 'u', 'FFFFFFFF/0', 0, source_commit_time
         FROM "${s}".fact_payment WHERE payment_record_id = $1
       RETURNING payment_record_id, payment_amount::text`,
      [latest.payment_record_id],
    );
    const result = await check(s);
    const key = String(latest.payment_id);
    expect(byPlace(result.differences)).toEqual([
      { table: 'fact_payment', key, column: 'payment_amount', expected: latest.payment_amount, found: added.payment_amount },
      { table: 'fact_payment_current', key, column: 'payment_record_id', expected: String(added.payment_record_id), found: String(latest.payment_record_id) },
    ]);
    expect(result.tables.find((r) => r.table === 'fact_payment')).toMatchObject({ differences: 1 });
  });
});
