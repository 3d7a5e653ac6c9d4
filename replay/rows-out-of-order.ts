/**
 * Whether late events break their rows' order. A late event (reorder-window.ts) loads after
 * events later in stream order; that is harmless across rows (a shard the archive holds behind
 * the others: each row's changes are on one shard, in order) and for a copy of a version
 * loaded already. It is not for a fact version that arrives after a later version of its own
 * row: the later one may have read the wrong version before it (a delete carries the values it
 * ends, a snapshot read appends only when it differs). Dimensions only move forward, so a late
 * dimension change is ignored by the merge either way.
 *
 * Asked of the warehouse, read only, in two steps: just before the late events' batch merges,
 * a later version of the row is there and the version itself is not (lateVersionsMissing);
 * once it has merged, the version is there now (stillLoaded). A snapshot read equal to the
 * version before it is never appended: it changed nothing, whenever it came.
 */
import { LOAD_TABLES, type LoadRow, type LoadTableName, versionBeforeSql } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';

export interface RowOutOfOrder {
  table: LoadTableName;
  key: number;
  /** The late version's (lsn, pos). */
  id: string;
  lsn: string;
  pos: number;
}

export async function lateVersionsMissing(db: pg.Pool, schema: string, late: Map<LoadTableName, LoadRow[]>): Promise<RowOutOfOrder[]> {
  const found: RowOutOfOrder[] = [];
  for (const [table, rows] of late) {
    const { kind, key } = LOAD_TABLES[table];
    if (kind !== 'fact' || rows.length === 0) continue;
    const t = `"${schema}"."${table}"`;
    const { rows: out } = await db.query(
      `SELECT l.key, l.lsn, l.pos FROM unnest($1::int[], $2::text[], $3::int[]) AS l(key, lsn, pos)
        WHERE EXISTS (SELECT 1 FROM ${t} f WHERE f."${key}" = l.key AND ${versionBeforeSql(['l.lsn::pg_lsn', 'l.pos'], 'f')})
          AND NOT EXISTS (SELECT 1 FROM ${t} f WHERE f."${key}" = l.key AND f.source_lsn = l.lsn::pg_lsn AND f.source_pos = l.pos)`,
      [rows.map((r) => r[key] as number), rows.map((r) => r.source_lsn), rows.map((r) => r.source_pos)],
    );
    for (const r of out) found.push({ table, key: r.key as number, id: `${r.lsn}:${r.pos}`, lsn: r.lsn as string, pos: r.pos as number });
  }
  return found;
}

/** Of versions lateVersionsMissing found, those the merge has appended since. */
export async function stillLoaded(db: pg.Pool, schema: string, candidates: RowOutOfOrder[]): Promise<RowOutOfOrder[]> {
  const found: RowOutOfOrder[] = [];
  for (const table of new Set(candidates.map((c) => c.table))) {
    const own = candidates.filter((c) => c.table === table);
    const key = LOAD_TABLES[table].key;
    const { rows } = await db.query(
      `SELECT l.i FROM unnest($1::int[], $2::text[], $3::int[]) WITH ORDINALITY AS l(key, lsn, pos, i)
        WHERE EXISTS (SELECT 1 FROM "${schema}"."${table}" f WHERE f."${key}" = l.key AND f.source_lsn = l.lsn::pg_lsn AND f.source_pos = l.pos)`,
      [own.map((c) => c.key), own.map((c) => c.lsn), own.map((c) => c.pos)],
    );
    for (const r of rows) found.push(own[Number(r.i) - 1]);
  }
  return found;
}
