/**
 * Staging: a load table's rows into its temp table (merge-sql.ts) by COPY, the fastest way in,
 * each change once however often it was delivered (in one batch or in two merged together).
 */
import { LOAD_TABLES, type LoadRow, type LoadTableName } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';
import { type CopyValue, copyRows } from '../lib/pg-copy.ts';
import { stageColumns, stageName, stageTableSql } from './merge-sql.ts';

/** The rows with each change (natural key, source_lsn, source_pos) once. */
export function distinctChanges(table: LoadTableName, rows: LoadRow[]): LoadRow[] {
  const key = LOAD_TABLES[table].key;
  const seen = new Set<string>();
  return rows.filter((r) => {
    const id = `${r[key]}:${r.source_lsn}:${r.source_pos}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** Create the temp staging tables of `tables` (if they are not yet), in one round trip. */
export async function createStages(db: pg.PoolClient, tables: LoadTableName[]): Promise<void> {
  if (tables.length > 0) await db.query(tables.map(stageTableSql).join(';\n'));
}

/** COPY `rows` into the table's stage; returns the changes staged. */
export function stageRows(db: pg.PoolClient, table: LoadTableName, rows: LoadRow[]): Promise<number> {
  return copyRows(
    db,
    stageName(table),
    stageColumns(table).map(([n]) => n),
    distinctChanges(table, rows) as unknown as Record<string, CopyValue>[],
  );
}
