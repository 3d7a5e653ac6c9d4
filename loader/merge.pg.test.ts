/**
 * mergeTables' dimension paths against a real Postgres: rows of keys the warehouse lacks go in by
 * COPY, the rest through the staged upsert, and the result is the upsert's alone.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { createDatabase } from '../test/harness.ts';
import { mergeTables } from './merge.ts';
import { mergeDimensionSql } from './merge-sql.ts';
import { createStages, stageRows } from './stage.ts';
import { warehouseDdl } from './warehouse-schema.ts';

let db: Awaited<ReturnType<typeof createDatabase>>;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createDatabase('merge_tables');
  pool = poolFor(db.url, 2);
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

function row(values: Record<string, unknown>, op: LoadRow['source_op'], lsn: string, pos = 0, unchanged: string | null = null): LoadRow {
  return {
    file_location: null,
    file_name: null,
    ...values,
    source_op: op,
    source_lsn: lsn,
    source_pos: pos,
    source_commit_time: '2024-05-01T09:15:02.456Z',
    unchanged,
  } as LoadRow;
}

/** The upsert alone, in waves (what every dimension row went through before the COPY path); one wave when each key has one row. */
async function upsertOnly(c: pg.PoolClient, schema: string, table: LoadTableName, rows: LoadRow[], waves = rows.length): Promise<void> {
  await createStages(c, [table]);
  await stageRows(c, table, rows);
  const [update, insert] = mergeDimensionSql(table, schema, true);
  for (let wave = 1; wave <= waves; wave++) {
    await c.query(update, [wave]);
    await c.query(insert, [wave]);
  }
}

it('gives the dimension the upsert gives, whichever keys go in by COPY', async () => {
  const earlier = [
    row({ design_id: 1, design_name: 'Old' }, 'c', '0/10'),
    row({ design_id: 6, design_name: 'Kept', file_location: 'y'.repeat(3000) }, 'c', '0/10', 1),
  ];
  const load = [
    row({ design_id: 1, design_name: 'Updated' }, 'u', '0/20'), // held already: upserted
    row({ design_id: 2, design_name: 'First' }, 'c', '0/20', 1), // new, changed again in the load: the latest goes in
    row({ design_id: 2, design_name: 'Second', file_location: '/2' }, 'u', '0/30'),
    row({ design_id: 3, design_name: 'Big', file_location: 'x'.repeat(5000) }, 'c', '0/20', 2), // new, its latest keeps unchanged TOAST: upserted
    row({ design_id: 3, design_name: 'Renamed', file_location: null }, 'u', '0/30', 1, ',file_location,'),
    row({ design_id: 4, design_name: 'Gone' }, 'd', '0/30', 2), // new and deleted: a tombstone
    row({ design_id: 5, design_name: 'Read' }, 'r', '0/5'), // a snapshot read of a new key
    row({ design_id: 6, design_name: 'Toasted', file_location: null }, 'u', '0/40', 0, ',file_location,'), // held, unchanged TOAST
  ];
  const designs = async (schema: string) =>
    (await pool.query(`SELECT design_id, design_name, file_location, source_lsn::text, source_pos, is_deleted FROM ${schema}.dim_design ORDER BY design_id`))
      .rows;
  const built: Record<string, unknown[]> = {};
  for (const [schema, merge] of [
    ['by_merge', async (c: pg.PoolClient, s: string, rows: LoadRow[]) => void (await mergeTables(c, s, new Map([['dim_design', rows]])))],
    ['by_upsert', (c: pg.PoolClient, s: string, rows: LoadRow[]) => upsertOnly(c, s, 'dim_design', rows)],
  ] as const) {
    await inTransaction(pool, (c) => c.query(warehouseDdl(schema)));
    await inTransaction(pool, (c) => merge(c, schema, earlier));
    await inTransaction(pool, (c) => merge(c, schema, load));
    built[schema] = await designs(schema);
  }
  expect(built.by_merge).toEqual(built.by_upsert);
  expect(built.by_merge.map((d) => (d as { design_name: string }).design_name)).toEqual(['Updated', 'Second', 'Renamed', 'Gone', 'Read', 'Toasted']);
  expect((built.by_merge[2] as { file_location: string }).file_location).toHaveLength(5000);
  expect((built.by_merge[5] as { file_location: string }).file_location).toHaveLength(3000);
  expect((built.by_merge[3] as { is_deleted: boolean }).is_deleted).toBe(true);
});

it('gives the upsert result too when a load brings enough new keys to COPY them in the binary format', async () => {
  // past BINARY_DIMENSION_ROWS (stage.ts): new keys of every kind, deleted ones and text that text COPY would escape among them
  const many = Array.from({ length: 1_500 }, (_, k) =>
    row({ design_id: 100 + k, design_name: `design\t${k}\n`, file_location: k % 3 ? `/d/${k}` : null }, k % 7 ? 'c' : 'd', `0/${(0x100 + k).toString(16)}`, k),
  );
  const built: Record<string, unknown[]> = {};
  for (const [schema, merge] of [
    ['many_by_merge', async (c: pg.PoolClient, s: string) => void (await mergeTables(c, s, new Map([['dim_design', many]])))],
    ['many_by_upsert', (c: pg.PoolClient, s: string) => upsertOnly(c, s, 'dim_design', many, 1)],
  ] as const) {
    await inTransaction(pool, (c) => c.query(warehouseDdl(schema)));
    await inTransaction(pool, (c) => merge(c, schema));
    built[schema] = (
      await pool.query(`SELECT design_id, design_name, file_location, source_lsn::text, source_pos, is_deleted FROM ${schema}.dim_design ORDER BY design_id`)
    ).rows;
  }
  expect(built.many_by_merge).toHaveLength(1_500);
  expect(built.many_by_merge).toEqual(built.many_by_upsert);
});
