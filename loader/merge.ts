/**
 * One load's merge, inside the load transaction (warehouse.ts): the dimensions first (rows of
 * new keys COPYed straight in, the rest staged by COPY and upserted), then every date and
 * dimension key the facts name, then the facts. Fact
 * versions that need nothing from the version before them (inserts and updates carrying all
 * their values) go straight into their table by COPY (stage.ts), or through the stage when one
 * is there already; the rest (deletes, snapshot reads, unchanged TOAST) read the version before
 * them, in waves. Last, the warehouse-side joins of the dimensions touched.
 */
import { DERIVED, DERIVED_TABLES, isIndependentVersion, LOAD_TABLES, type LoadRow, type LoadTableName } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';
import { appendFactSql, datesSql, type FactReferences, inferredMembersSql, mergeDimensionSql, propagationSql, referencedKeys, stageName } from './merge-sql.ts';
import { historyName, inferredHistorySql } from './history-sql.ts';
import { carryKeyMoves } from './key-moves.ts';
import { copyFacts, copyNewDimensionRows, createStages, distinctChanges, keysInWaves, stageRows, utcTimestampText } from './stage.ts';

/** LOAD_TABLES is in merge order: dimensions before the facts that reference them, sources before the dimensions derived from them. */
const MERGE_ORDER = Object.keys(LOAD_TABLES) as LoadTableName[];

/** What a merge found: the facts' references, and the dimension keys that may hold an inferred member's placeholder. */
export interface Merged extends FactReferences {
  /**
   * Per dimension, the keys of the load's rows it held already (or merged one version at a time):
   * a placeholder comes with a dimension row (inferredMembersSql), so no other key of the load
   * can have one for filledInSql to remove.
   */
  held: Map<LoadTableName, number[]>;
}

interface Statement {
  sql: string;
  params?: unknown[];
}

/**
 * Merge `tables`, the load's rows. `toAppend` are the fact versions not yet in their tables
 * (default: every fact row of `tables`; fewer when appendIndependentFacts took some already).
 */
export async function mergeTables(
  db: pg.PoolClient,
  schema: string,
  tables: Map<LoadTableName, LoadRow[]>,
  toAppend: Map<LoadTableName, LoadRow[]> = tables,
): Promise<Merged> {
  await carryKeyMoves(db, schema, tables);
  const present = MERGE_ORDER.filter((t) => tables.get(t)?.length);
  const dims = present.filter((t) => LOAD_TABLES[t].kind === 'dim');
  const facts = present.filter((t) => LOAD_TABLES[t].kind === 'fact' && toAppend.get(t)?.length);
  // fact versions for a COPY of their own, when every one of them can go that way
  const direct = new Map<LoadTableName, LoadRow[]>();
  for (const table of facts) {
    const own = directVersions(distinctChanges(table, toAppend.get(table)!));
    if (own) direct.set(table, own);
  }
  // dimension rows of new keys go straight in; the rest are upserted through the stage
  const upserts = new Map<LoadTableName, LoadRow[]>();
  for (const table of dims) {
    const rest = await copyNewDimensionRows(db, schema, table, tables.get(table)!);
    if (rest.length > 0) upserts.set(table, rest);
  }
  const staged = new Map<LoadTableName, LoadRow[]>(upserts);
  for (const table of facts) {
    const rows = direct.has(table) ? toAppend.get(table)!.filter(needsPreviousVersion) : toAppend.get(table)!;
    if (rows.length > 0) staged.set(table, rows);
  }
  await createStages(db, [...staged.keys()]);
  for (const [table, rows] of staged) await stageRows(db, table, rows);

  const first: Statement[] = [];
  for (const [table, rows] of upserts) {
    if (keysInWaves(table, rows).size > 0) {
      const [update, insert] = mergeDimensionSql(table, schema, true);
      for (let wave = 1; wave <= maxCount(rows, LOAD_TABLES[table].key); wave++) first.push({ sql: update, params: [wave] }, { sql: insert, params: [wave] });
    } else {
      for (const sql of mergeDimensionSql(table, schema, false)) first.push({ sql });
    }
  }
  // after the dimensions' own rows, before the facts: every date and key a fact names exists
  const named = referencedKeys(new Map(present.filter((t) => LOAD_TABLES[t].kind === 'fact').map((t) => [t, tables.get(t)!])));
  if (named.dates.length > 0) first.push({ sql: datesSql(schema), params: [named.dates] });
  for (const [dim, keys] of named.members) {
    // a key among the dimension's own rows of this load was merged just above
    const merged = new Set(tables.get(dim)?.map((r) => r[LOAD_TABLES[dim].key]));
    const missing = merged.size > 0 ? keys.filter((k) => !merged.has(k)) : keys;
    if (missing.length > 0)
      first.push({ sql: inferredHistorySql(dim, schema), params: [missing] }, { sql: inferredMembersSql(dim, schema), params: [missing] });
  }
  await runInOrder(db, first);

  for (const table of facts) {
    const rows = toAppend.get(table)!;
    await appendVersions(db, schema, table, table, direct.get(table) ?? null, rows.filter(needsPreviousVersion));
  }
  // every version of the dimensions' rows into their histories, as facts append theirs (their stages are free now)
  for (const table of dims) {
    const rows = distinctChanges(table, tables.get(table)!);
    const own = directVersions(rows);
    const rest = own ? rows.filter(needsPreviousVersion) : rows;
    await createStages(db, [table]);
    await db.query(`DELETE FROM ${stageName(table)}`);
    if (rest.length > 0) await stageRows(db, table, rest);
    await appendVersions(db, schema, table, historyName(table), own, rest.filter(needsPreviousVersion));
  }

  const keysOf = (table: LoadTableName) => tables.get(table)?.map((r) => r[LOAD_TABLES[table].key] as number) ?? [];
  const propagate = propagationSql(schema);
  const last: Statement[] = [];
  for (const table of DERIVED_TABLES) {
    const [own, sources] = [keysOf(table), keysOf(DERIVED[table].from)];
    if (own.length || sources.length) last.push({ sql: propagate[table], params: [own, sources] });
  }
  await runInOrder(db, last);
  const held = new Map([...upserts].map(([table, rows]) => [table, rows.map((r) => r[LOAD_TABLES[table].key] as number)]));
  return { ...named, held };
}

/**
 * Append a fact table's versions that need nothing from the version before them, by COPY, ahead
 * of the rest of the merge; returns the versions left for mergeTables (all of them when they
 * cannot go this way). Only in a load trusting its references: the dates and dimension keys
 * these versions name are inserted after them, in the same transaction.
 */
export async function appendIndependentFacts(db: pg.PoolClient, schema: string, table: LoadTableName, rows: LoadRow[]): Promise<LoadRow[]> {
  const own = directVersions(distinctChanges(table, rows));
  if (!own) return rows;
  if (!(await copyFacts(db, schema, table, own))) {
    await appendThroughStage(db, schema, table, own);
    await db.query(`DELETE FROM ${stageName(table)}`); // staged again, with the rest, by mergeTables
  }
  return rows.filter(needsPreviousVersion);
}

/**
 * Append a load table's versions to `target` (the fact table, or a dimension's history): `own`
 * by COPY (null: those in the stage, by one statement), then the `dependent` ones, staged, in
 * waves, each reading the version before it.
 */
async function appendVersions(
  db: pg.PoolClient,
  schema: string,
  table: LoadTableName,
  target: string,
  own: LoadRow[] | null,
  dependent: LoadRow[],
): Promise<void> {
  const append = appendFactSql(table, schema, target);
  if (!own) await db.query(append.independent);
  else if (!(await copyFacts(db, schema, table, own, target))) await appendThroughStage(db, schema, table, own, target);
  const waves = maxCount(dependent, LOAD_TABLES[table].key);
  for (let wave = 1; wave <= waves; wave++) await db.query(append.dependent, [wave]);
}

/** Independent versions some of which are in `target` already (delivered before): the stage appends those that are not. */
async function appendThroughStage(db: pg.PoolClient, schema: string, table: LoadTableName, versions: LoadRow[], target: string = table): Promise<void> {
  await createStages(db, [table]);
  await stageRows(db, table, versions);
  await db.query(appendFactSql(table, schema, target).independent);
}

/** Of a load table's changes (each once), the versions for a COPY of their own, or null when not every one of them can go that way. */
function directVersions(changes: LoadRow[]): LoadRow[] | null {
  const own = changes.filter((r) => !needsPreviousVersion(r));
  return own.length > 0 && own.every((r) => utcTimestampText(r.source_commit_time) !== null) ? own : null;
}

/** Run statements in order; consecutive ones without parameters go to Postgres as one multi-statement query (one round trip). */
async function runInOrder(db: pg.PoolClient, statements: Statement[]): Promise<void> {
  let pending: string[] = [];
  const flush = async () => {
    if (pending.length > 0) await db.query(pending.join(';\n'));
    pending = [];
  };
  for (const s of statements) {
    if (!s.params) {
      pending.push(s.sql);
      continue;
    }
    await flush();
    await db.query(s.sql, s.params);
  }
  await flush();
}

/** Whether a fact row's version depends on the version before it. */
function needsPreviousVersion(row: LoadRow): boolean {
  return !isIndependentVersion(row);
}

/** The most rows any one key has. */
function maxCount(rows: LoadRow[], key: string): number {
  const counts = new Map<unknown, number>();
  let max = 0;
  for (const r of rows) {
    const n = (counts.get(r[key]) ?? 0) + 1;
    counts.set(r[key], n);
    if (n > max) max = n;
  }
  return max;
}
