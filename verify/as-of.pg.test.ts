/**
 * `verify --as-of` on a running pipeline (two shards) under a random workload over all 11 tables:
 * every pinned comparison passes while the source keeps changing; a truth pinned early still
 * matches after everything later has loaded, though the source has moved on from it; and a
 * warehouse that differs at the pinned point fails, down to the one byte of the boundary.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bigIntToLsn, lsnToBigInt } from '../formats/change-event.ts';
import { poolFor } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { startTestPipeline, type TestPipeline } from '../test/pipeline-harness.ts';
import { RandomWorkload } from '../totesys/random-workload.ts';
import { loadTruth, type PinnedTruth, saveTruth, verifyAsOf } from './as-of.ts';
import { formatDifferences, verify } from './verify.ts';

const RATE = 40; // operations a second

let t: TestPipeline;
let warehouse: pg.Pool;
let dir: string;
let early: PinnedTruth;

beforeAll(async () => {
  t = await startTestPipeline({ shards: 2, scale: 0.01 });
  warehouse = poolFor(t.warehouseUrl, 2);
  dir = await mkdtemp(join(tmpdir(), 'as-of-'));
  // capture's initial snapshot loaded: its rows carry the LSNs of its chunks, so no point before it can be shown
  expect((await verify({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000 })).ok).toBe(true);
});
afterAll(async () => {
  await warehouse?.end();
  await t?.stop();
  if (dir) await rm(dir, { recursive: true });
});

const asOf = (at?: PinnedTruth) => verifyAsOf({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, waitMs: 60_000, at });

describe('verify --as-of', () => {
  it('passes at every point it pins while a random workload runs, and a truth it saved still passes after later changes load', async () => {
    const work = poolFor(t.sourceUrl, 2);
    const random = new RandomWorkload(work, 25);
    const workload = random.runPaced(RATE);
    try {
      const file = join(dir, 'truth.json');
      for (let i = 0; i < 4; i++) {
        const result = await verifyAsOf({
          sourceUrl: t.sourceUrl,
          warehouseUrl: t.warehouseUrl,
          waitMs: 60_000,
          onPinned: i === 0 ? (pinned) => saveTruth(file, pinned) : undefined,
        });
        expect(formatDifferences(result.differences), `pinned at ${result.point.lsn}`).toBe('');
        expect(result.ok).toBe(true);
        expect(lsnToBigInt(result.watermarkLsn as string)).toBeGreaterThanOrEqual(lsnToBigInt(result.point.lsn));
      }
      early = await loadTruth(file);
    } finally {
      await workload.stop();
      await work.end();
    }
    expect(random.committed).toBeGreaterThan(50);

    let late: PinnedTruth | undefined;
    const now = await verifyAsOf({ sourceUrl: t.sourceUrl, warehouseUrl: t.warehouseUrl, onPinned: async (p) => void (late = p) });
    expect(now.ok).toBe(true);
    // the source has moved on from the early point in dimensions and facts alike, so only history can pass it
    const changedSince = (table: 'dim_location' | 'fact_sales_order') =>
      [...(early.truth.tables[table] ?? [])].filter(([k, row]) => JSON.stringify(late?.truth.tables[table]?.get(k)) !== JSON.stringify(row)).length;
    expect(changedSince('dim_location')).toBeGreaterThan(0);
    expect(changedSince('fact_sales_order')).toBeGreaterThan(0);

    const again = await asOf(early);
    expect(formatDifferences(again.differences)).toBe('');
    expect(again.ok).toBe(true);
    expect(again.point).toEqual(early.point);
  });

  it('fails when the warehouse differs at the pinned point, and reads a version stamped one byte past it as not yet there', async () => {
    expect(early, 'the truth the test before pinned').toBeDefined();
    const point = lsnToBigInt(early.point.lsn);
    // a payment's version as it stood at the early point
    const { rows } = await warehouse.query(
      `SELECT DISTINCT ON (payment_id) payment_id::text, payment_record_id, payment_amount::text FROM fact_payment
        WHERE source_lsn <= $1::pg_lsn AND NOT is_deleted ORDER BY payment_id, source_lsn DESC, source_pos DESC LIMIT 2`,
      [early.point.lsn],
    );
    const [wrong, stamped] = rows;
    const copyVersion = (recordId: number, lsn: bigint) =>
      warehouse.query(
        `INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date, last_updated_time, transaction_id, counterparty_id,
           payment_amount, currency_id, payment_type_id, paid, payment_date, source_op, source_lsn, source_pos, source_commit_time)
         SELECT payment_id, created_date, created_time, last_updated_date, last_updated_time, transaction_id, counterparty_id,
           payment_amount + 1, currency_id, payment_type_id, paid, payment_date, 'u', $2::pg_lsn, 999999, source_commit_time
           FROM fact_payment WHERE payment_record_id = $1 RETURNING payment_amount::text`,
        [recordId, bigIntToLsn(lsn)],
      );
    // a value changed in the version then; a newer version stamped at the consistent point (after the snapshot: not shown)
    await warehouse.query(`UPDATE fact_payment SET payment_amount = payment_amount + 0.01 WHERE payment_record_id = $1`, [wrong.payment_record_id]);
    await copyVersion(stamped.payment_record_id, point + 1n);
    const once = await asOf(early);
    expect(once.ok).toBe(false);
    const plusCent = (v: string) => (Number(v) + 0.01).toFixed(2);
    expect(once.differences).toEqual([
      { table: 'fact_payment', key: wrong.payment_id, column: 'payment_amount', expected: wrong.payment_amount, found: plusCent(wrong.payment_amount) },
    ]);
    // the same newer version stamped at the pinned LSN itself: shown, so a difference
    const added = await copyVersion(stamped.payment_record_id, point);
    const twice = await asOf(early);
    expect(twice.differences.filter((d) => d.key === stamped.payment_id)).toEqual([
      { table: 'fact_payment', key: stamped.payment_id, column: 'payment_amount', expected: stamped.payment_amount, found: added.rows[0].payment_amount },
    ]);
  });
});
