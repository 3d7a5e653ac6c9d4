/**
 * verify on a dirty source: the values real people type into totesys (dates like "TBC", "",
 * "31/12/2024", "2024-02-30", "infinity", year 10000 and BC, an infinite timestamp, a currency
 * code ISO 4217 does not have) run through the pipeline, which sets each change aside as a dead
 * letter. verify does not stop on them: it lists each row as set aside with its reason and the
 * dead letter that accounts for it, compares every other row, and passes. Take a dead letter
 * away and it fails, naming the row that has none. A numeric NaN the pipeline never saw is set
 * aside too, with no dead letter.
 */
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Client } from '../lib/aws.ts';
import { startTestPipeline, type TestPipeline } from '../test/pipeline-harness.ts';
import { runTotes } from '../test/totes-process.ts';
import { Simulator } from '../totesys/simulator.ts';
import { formatDifferences, formatSetAside, type SetAside, type VerifyOptions, type VerifyResult, verify } from './verify.ts';

let t: TestPipeline;
let options: VerifyOptions;

const KEYS: Record<string, string> = {
  sales_order: 'sales_order_id',
  purchase_order: 'purchase_order_id',
  payment: 'payment_id',
  currency: 'currency_id',
};
/** Each dirty value on a row of its own: [source table, column, value, the reason verify gives]. */
const DIRTY: [table: string, column: string, value: string, reason: string][] = [
  ['sales_order', 'agreed_payment_date', 'TBC', 'not a YYYY-MM-DD date'],
  ['sales_order', 'agreed_delivery_date', '', 'not a YYYY-MM-DD date'],
  ['sales_order', 'agreed_payment_date', '2024-01-01 BC', 'not a YYYY-MM-DD date'],
  ['purchase_order', 'agreed_delivery_date', '31/12/2024', 'not a YYYY-MM-DD date'],
  ['purchase_order', 'agreed_payment_date', '2024-02-30', 'no such day in the calendar'],
  ['payment', 'payment_date', 'infinity', 'not a YYYY-MM-DD date'],
  ['payment', 'payment_date', '10000-01-01', 'not a YYYY-MM-DD date'],
  ['payment', 'last_updated', 'infinity', 'not a timestamp from year 1 to 9999'],
  ['currency', 'currency_code', 'XYZ', 'no ISO 4217 currency has this code'],
];
const STAR: Record<string, string> = {
  sales_order: 'fact_sales_order',
  purchase_order: 'fact_purchase_order',
  payment: 'fact_payment',
  currency: 'dim_currency',
};

type Expected = Omit<SetAside, 'deadLetter'>;
const expected: Expected[] = [];
const place = (s: { sourceTable: string; key: string; column: string }) => `${s.sourceTable} ${s.key} ${s.column}`;
const byPlace = <T extends Expected>(rows: T[]) => [...rows].sort((a, b) => place(a).localeCompare(place(b)));
const withoutLetters = (rows: SetAside[]) => byPlace(rows.map(({ deadLetter, ...rest }) => rest));

/** Sets `column` of the n-th row of `table` to `value`, each in its own transaction; returns the row's key. */
async function dirty(table: string, column: string, value: string, n: number): Promise<string> {
  const pk = KEYS[table];
  const { rows } = await t.sourcePool.query(
    `UPDATE ${table} SET ${column} = $1 WHERE ${pk} = (SELECT ${pk} FROM ${table} ORDER BY ${pk} OFFSET ${n} LIMIT 1) RETURNING ${pk}::text AS k`,
    [value],
  );
  return rows[0].k;
}

beforeAll(async () => {
  t = await startTestPipeline({ shards: 1, scale: 0.02 });
  await new Simulator(t.sourcePool, 5).run({ changes: 100 });
  options = { sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, deadLetters: { bucket: 'processed', s3Endpoint: t.s3Endpoint } };
  // the snapshot done and loaded, so each dirty row has one change after it, and one dead letter
  const clean = await verify({ ...options, waitMs: 60_000 });
  expect(formatDifferences(clean.differences)).toBe('');
  expect(clean.setAside).toEqual([]);
  const seen = new Map<string, number>();
  for (const [table, column, value, reason] of DIRTY) {
    const n = seen.get(table) ?? 0;
    seen.set(table, n + 1);
    const key = await dirty(table, column, value, n);
    expected.push({ table: STAR[table] as SetAside['table'], sourceTable: table, key, column, value, reason });
  }
  // a new order that never had a clean version: the warehouse has no row for it
  const { rows } = await t.sourcePool.query(
    `INSERT INTO sales_order (created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id,
       agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id)
     SELECT created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id,
       agreed_delivery_date, '31/12/2024', agreed_delivery_location_id FROM sales_order ORDER BY sales_order_id DESC LIMIT 1
     RETURNING sales_order_id::text AS k`,
  );
  expected.push({
    table: 'fact_sales_order',
    sourceTable: 'sales_order',
    key: rows[0].k,
    column: 'agreed_payment_date',
    value: '31/12/2024',
    reason: 'not a YYYY-MM-DD date',
  });
});
afterAll(async () => {
  await t?.stop();
});

let passed: VerifyResult;

/** `totes verify` as a person runs it, on this pipeline's source, warehouse and processed bucket. */
const totesVerify = () =>
  runTotes(['verify', '--source', t.sourceUrl, '--warehouse', t.warehouseUrl, '--bucket', 'processed', '--s3-endpoint', t.s3Endpoint, '--wait', '0'], {});

describe('verify on a dirty source', () => {
  it('lists each row the pipeline set aside, with its reason and dead letter, compares the rest, and passes', async () => {
    passed = await verify({ ...options, waitMs: 60_000 });
    expect(formatDifferences(passed.differences)).toBe('');
    expect(withoutLetters(passed.setAside)).toEqual(byPlace(expected));
    for (const s of passed.setAside) expect(s.deadLetter, place(s)).toMatch(/^dead-letter\/.+\.json$/);
    expect(passed.ok).toBe(true);
    expect(passed.tables.find((r) => r.table === 'fact_sales_order')?.setAside).toBe(4);
    expect(formatSetAside(passed.setAside)).toContain(
      `  sales_order  key=${expected[0].key}  agreed_payment_date: "TBC", not a YYYY-MM-DD date; dead letter dead-letter/`,
    );
    const cli = await totesVerify();
    expect(cli.stderr).not.toContain('Differences');
    expect(cli.stderr).toContain(`Rows set aside, not compared`);
    expect(cli.stderr).toContain(`  currency  key=${expected.find((e) => e.sourceTable === 'currency')?.key}  currency_code: "XYZ"`);
    expect(cli.stderr).toContain('A dead letter names each');
    expect(cli.stderr).toContain('verify: PASSED');
    expect(cli.code).toBe(0);
  });

  it('fails when a row set aside has no dead letter, and names it', async () => {
    const tbc = passed.setAside.find((s) => s.value === 'TBC')!;
    const s3 = s3Client({ s3Endpoint: t.s3Endpoint });
    await s3.send(new DeleteObjectCommand({ Bucket: 'processed', Key: tbc.deadLetter! }));
    s3.destroy();
    const result = await verify({ ...options, waitMs: 0 });
    expect(result.ok).toBe(false);
    expect(result.differences).toEqual([]);
    // a record may carry several rows' changes: every row its dead letter named has none now
    const lost = passed.setAside.filter((s) => s.deadLetter === tbc.deadLetter).map(place);
    expect(lost).toContain(place(tbc));
    expect(result.setAside.filter((s) => !s.deadLetter).map(place)).toEqual(lost);
    expect(formatSetAside(result.setAside)).toContain(`  sales_order  key=${tbc.key}  agreed_payment_date: "TBC", not a YYYY-MM-DD date; NO DEAD LETTER`);
    const cli = await totesVerify();
    expect(cli.stderr).toContain(`${lost.length} of them with NO DEAD LETTER`);
    expect(cli.stderr).toContain('verify: FAILED');
    expect(cli.code).toBe(1);
  });

  it('sets aside a numeric NaN in money: no crash, no dead letter', async () => {
    await t.pipeline.capture.stop(); // the pipeline does not see it
    // numeric(10,2) holds NaN on every major; an Infinity it refuses ("numeric field overflow") even on 14+
    const key = await dirty('sales_order', 'unit_price', 'NaN', 10);
    const result = await verify({ ...options, waitMs: 0 });
    expect(result.ok).toBe(false);
    expect(result.differences).toEqual([]);
    expect(result.setAside.filter((s) => s.column === 'unit_price')).toEqual([
      {
        table: 'fact_sales_order',
        sourceTable: 'sales_order',
        key,
        column: 'unit_price',
        value: 'NaN',
        reason: 'not a numeric(10,2) amount',
        deadLetter: null,
      },
    ]);
  });
});
