/**
 * `totes forget`: erase one data subject (a staff member, a counterparty's contacts).
 *
 * 1. The key store records the erasure and destroys the subject's key (stores/subject-keys.ts):
 *    every sealed copy of their values (archive, stream, micro-batches, dead letters, claim-check
 *    objects) is unreadable from then on, and capture seals their later changes as erased.
 * 2. A process that read the key before keeps it in memory for at most KEY_CACHE_MS: in that
 *    time a loader may still open a value and write it in the clear. So the warehouse is erased
 *    only once that time has passed since the erasure (a second run, later, does not wait).
 * 3. Every base table in the warehouse database that has the subject's key column and one of
 *    their personal columns (by the source's or the warehouse's name, found through
 *    information_schema: the dimension, its `_history`, a rebuilt or replaced schema) gets
 *    `[erased]` in place of each non-null personal value of the subject's rows: exactly what a
 *    replay makes of them, so verify and a replay agree with the live warehouse.
 */
import { ERASED, PERSONAL_DATA, type Subject } from '../formats/personal-data.ts';
import { primaryKeyOf, type SourceTable } from '../formats/source-tables.ts';
import { inTransaction } from '../lib/pg.ts';
import type pg from '../lib/pg.ts';
import { KEY_CACHE_MS, type SubjectKeys } from '../stores/subject-keys.ts';

/** A table holding the subject's personal values, and how many of its rows still show one. */
export interface ErasedTable {
  schema: string;
  table: string;
  columns: string[];
  rows: number;
}

export interface ForgetResult {
  subject: Subject;
  /** 'destroyed' now, 'recorded' (no key had been made yet), 'already erased', or with dryRun what the store holds. */
  key: 'destroyed' | 'recorded' | 'already erased' | 'would destroy' | 'would record';
  erasedAt: string | null;
  /** How long the run waited for the key caches of running processes. */
  waitedMs: number;
  /** Rows changed per table (with dryRun: rows that would be). */
  tables: ErasedTable[];
}

export interface ForgetOptions {
  keys: SubjectKeys;
  warehouse: pg.Pool;
  subject: Subject;
  dryRun?: boolean;
  /** How long a running process may keep a key it read (default KEY_CACHE_MS). */
  keyCacheMs?: number;
  onWait?: (ms: number) => void;
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** The subject's key column, and their personal columns by every name they have (source and warehouse). */
function personalColumns(subject: Subject): { keyColumn: string; columns: string[] } {
  const [table, { columns }] = Object.entries(PERSONAL_DATA).find(([, d]) => d.subject === subject.kind)!;
  const names = Object.entries(columns).flatMap(([source, landed]) => [source, ...(landed ? [landed.split('.')[1]] : [])]);
  return { keyColumn: primaryKeyOf(table as SourceTable), columns: [...new Set(names)] };
}

/** The tables with the subject's key column and personal columns, each with the rows still showing a value. */
async function tablesHolding(db: pg.Pool | pg.PoolClient, subject: Subject): Promise<ErasedTable[]> {
  const { keyColumn, columns } = personalColumns(subject);
  const found = await db.query<{ table_schema: string; table_name: string; columns: string[] }>(
    `SELECT c.table_schema, c.table_name, array_agg(c.column_name::text ORDER BY c.ordinal_position) AS columns
       FROM information_schema.columns c
       JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
      WHERE c.column_name = ANY($1) AND c.data_type IN ('text', 'character varying')
        AND EXISTS (SELECT 1 FROM information_schema.columns k
                     WHERE k.table_schema = c.table_schema AND k.table_name = c.table_name AND k.column_name = $2)
      GROUP BY 1, 2 ORDER BY 1, 2`,
    [columns, keyColumn],
  );
  const tables: ErasedTable[] = [];
  for (const t of found.rows) {
    const table = `${quote(t.table_schema)}.${quote(t.table_name)}`;
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${quote(keyColumn)} = $1 AND (${showing(t.columns)})`, [subject.id, ERASED]);
    tables.push({ schema: t.table_schema, table: t.table_name, columns: t.columns, rows: rows[0].n });
  }
  return tables;
}

/** A row still shows a value: one of its personal columns holds something other than the marker. */
const showing = (columns: string[]) => columns.map((c) => `${quote(c)} <> $2`).join(' OR ');

export async function forget(opts: ForgetOptions): Promise<ForgetResult> {
  const { keys, warehouse, subject } = opts;
  const cacheMs = opts.keyCacheMs ?? KEY_CACHE_MS;
  if (opts.dryRun) {
    const record = await keys.record(subject);
    return {
      subject,
      key: record?.erasedAt ? 'already erased' : record ? 'would destroy' : 'would record',
      erasedAt: record?.erasedAt ?? null,
      waitedMs: 0,
      tables: await tablesHolding(warehouse, subject),
    };
  }
  const before = await keys.record(subject);
  const { destroyed, erasedAt } = await keys.deleteKey(subject);
  const waitedMs = Math.max(0, Date.parse(erasedAt) + cacheMs - Date.now());
  if (waitedMs > 0) {
    opts.onWait?.(waitedMs);
    await new Promise((r) => setTimeout(r, waitedMs));
  }
  const tables = await inTransaction(warehouse, async (db) => {
    const held = await tablesHolding(db, subject);
    const { keyColumn } = personalColumns(subject);
    for (const t of held) {
      if (t.rows === 0) continue;
      const set = t.columns.map((c) => `${quote(c)} = CASE WHEN ${quote(c)} IS NULL THEN NULL ELSE $2 END`).join(', ');
      const changed = await db.query(`UPDATE ${quote(t.schema)}.${quote(t.table)} SET ${set} WHERE ${quote(keyColumn)} = $1 AND (${showing(t.columns)})`, [
        subject.id,
        ERASED,
      ]);
      t.rows = changed.rowCount ?? 0;
    }
    return held;
  });
  return { subject, key: destroyed ? 'destroyed' : before?.erasedAt ? 'already erased' : 'recorded', erasedAt, waitedMs, tables };
}
