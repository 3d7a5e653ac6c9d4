/**
 * Staging: a load table's rows into its temp table (merge-sql.ts) by COPY, the fastest way in,
 * each change once however often it was delivered (in one batch or in two merged together).
 */
import { type ColumnType, LOAD_TABLES, type LoadRow, type LoadTableName, type LoadValue, onePerKey, versionBefore } from '../formats/load-tables.ts';
import { log } from '../lib/log.ts';
import { type BinaryType, copyBinaryRows, NotBinaryError } from '../lib/pg-binary-copy.ts';
import type pg from '../lib/pg.ts';
import { type CopyValue, copyRows } from '../lib/pg-copy.ts';
import { SQLSTATE } from '../lib/sqlstate.ts';
import { stageColumns, stageName, stageTableSql } from './merge-sql.ts';

/** A commit time as the fact tables hold it (timestamp, UTC), when it is an instant in UTC to the microsecond; else null. */
export function utcTimestampText(commitTime: unknown): string | null {
  // a transaction's rows share its commit time, and come together: the last answer is kept
  if (commitTime === lastCommitTime.in) return lastCommitTime.out;
  const out =
    typeof commitTime === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$/.test(commitTime)
      ? `${commitTime.slice(0, 10)} ${commitTime.slice(11, -1)}`
      : null;
  lastCommitTime = { in: commitTime, out };
  return out;
}
let lastCommitTime: { in: unknown; out: string | null } = { in: undefined, out: null };

/**
 * COPY fact versions that need nothing from the version before them (inserts and updates
 * carrying all their values, commit times in UTC) straight into their table, under a savepoint:
 * when one is there already (delivered again in another batch) the COPY is undone and false
 * returned, for them to append through the stage (ON CONFLICT DO NOTHING) instead. `target`:
 * another table of the same columns (a dimension's history).
 */
export async function copyFacts(db: pg.PoolClient, schema: string, table: LoadTableName, rows: LoadRow[], target: string = table): Promise<boolean> {
  const columns = copyColumns(table, FACT_PROVENANCE);
  await db.query('SAVEPOINT copy_facts');
  try {
    await copyBinaryOrText(db, 'copy_facts', `"${schema}"."${target}"`, columns, rows, {
      source_commit_time: utcTimestampText,
      is_deleted: () => false,
    });
  } catch (err) {
    if ((err as { code?: string }).code !== SQLSTATE.unique_violation) throw err;
    await db.query('ROLLBACK TO SAVEPOINT copy_facts');
    return false;
  }
  await db.query('RELEASE SAVEPOINT copy_facts');
  return true;
}

/** Each COPYed column's binary type: a load table's own columns, then the provenance a target table keeps. */
const BINARY_TYPE: Record<ColumnType, BinaryType> = { int: 'int4', text: 'text', money: 'numeric', date: 'date', time: 'time', bool: 'bool' };
const FACT_PROVENANCE: [string, BinaryType][] = [
  ['source_op', 'text'],
  ['source_lsn', 'pg_lsn'],
  ['source_pos', 'int4'],
  ['source_commit_time', 'timestamp'],
  ['is_deleted', 'bool'],
];
const DIMENSION_PROVENANCE: [string, BinaryType][] = [
  ['source_lsn', 'pg_lsn'],
  ['source_pos', 'int4'],
  ['is_deleted', 'bool'],
];

function copyColumns(table: LoadTableName, provenance: [string, BinaryType][]): [string, BinaryType][] {
  return [...Object.entries(LOAD_TABLES[table].columns).map(([name, type]): [string, BinaryType] => [name, BINARY_TYPE[type]]), ...provenance];
}

/** New dimension rows below this go as text: the savepoint the binary COPY needs costs two round trips, more than it saves. */
const BINARY_DIMENSION_ROWS = 1_000;

/**
 * COPY in the binary format, which Postgres reads faster; when a value is in a form it does not
 * read, back to `savepoint` (taken by the caller) and COPY as text, Postgres's own input.
 */
async function copyBinaryOrText(
  db: pg.PoolClient,
  savepoint: string,
  target: string,
  columns: [string, BinaryType][],
  rows: LoadRow[],
  convert: Record<string, (value: CopyValue, row: Record<string, CopyValue>) => CopyValue>,
): Promise<number> {
  try {
    return await copyBinaryRows(db, target, columns, rows as unknown as Record<string, CopyValue>[], convert);
  } catch (err) {
    if (!(err instanceof NotBinaryError)) throw err;
    log.info({ target, reason: err.message }, 'copying as text');
    await db.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    return copyAsText(db, target, columns, rows, convert);
  }
}

/** The same COPY in the text format. */
function copyAsText(
  db: pg.PoolClient,
  target: string,
  columns: [string, BinaryType][],
  rows: LoadRow[],
  convert: Record<string, (value: CopyValue, row: Record<string, CopyValue>) => CopyValue>,
): Promise<number> {
  return copyRows(
    db,
    target,
    columns.map(([name]) => name),
    rows as unknown as Record<string, CopyValue>[],
    convert,
  );
}

/**
 * Dimension rows of keys the warehouse does not hold yet, each key's latest change, COPYed
 * straight into the dimension when that change carries every value (no unchanged TOAST): what
 * the upsert would insert, without staging and two statements over the stage. Returns the rows
 * left for the upsert (keys held already, or whose latest change keeps unchanged columns).
 * Inside the load transaction holding the loaders' lock, so no other writer adds a key between
 * the probe and the COPY.
 */
export async function copyNewDimensionRows(db: pg.PoolClient, schema: string, table: LoadTableName, rows: LoadRow[]): Promise<LoadRow[]> {
  const key = LOAD_TABLES[table].key;
  const latest = onePerKey(rows, key, (a, b) => versionBefore(b, a));
  const { rows: held } = await db.query(`SELECT "${key}" AS k FROM "${schema}"."${table}" WHERE "${key}" = ANY($1::int[])`, [[...latest.keys()]]);
  const upsert = new Set<number>(held.map((h) => h.k as number));
  for (const [k, r] of latest) if (r.unchanged !== null) upsert.add(k);
  const direct = [...latest.values()].filter((r) => !upsert.has(r[key] as number));
  const columns = copyColumns(table, DIMENSION_PROVENANCE);
  const convert = { is_deleted: (_: CopyValue, row: Record<string, CopyValue>) => row.source_op === 'd' };
  if (direct.length >= BINARY_DIMENSION_ROWS) {
    await db.query('SAVEPOINT copy_dimension');
    await copyBinaryOrText(db, 'copy_dimension', `"${schema}"."${table}"`, columns, direct, convert);
    await db.query('RELEASE SAVEPOINT copy_dimension');
  } else if (direct.length > 0) {
    await copyAsText(db, `"${schema}"."${table}"`, columns, direct, convert);
  }
  return direct.length === latest.size ? [] : rows.filter((r) => upsert.has(r[key] as number));
}

/** The rows with each change (natural key, source_lsn, source_pos) once. */
export function distinctChanges(table: LoadTableName, rows: LoadRow[]): LoadRow[] {
  const key = LOAD_TABLES[table].key;
  // by key first: most keys have one version in a load, so few versions are compared at all
  const byKey = new Map<LoadValue, LoadRow | LoadRow[]>();
  const out: LoadRow[] = [];
  for (const r of rows) {
    const seen = byKey.get(r[key]);
    if (seen === undefined) byKey.set(r[key], r);
    else {
      const versions = Array.isArray(seen) ? seen : [seen];
      if (versions.some((v) => v.source_pos === r.source_pos && v.source_lsn === r.source_lsn)) continue;
      versions.push(r);
      byKey.set(r[key], versions);
    }
    out.push(r);
  }
  return out;
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
