/**
 * Rows that end without a delete of their own: every row of a TRUNCATEd table, and the keys a
 * snapshot chunk did not find in its range (rows deleted while nothing was streaming, e.g. a
 * lost slot). Both are a RowsEnd at a stream position (lsn, pos), applied in the load
 * transaction after the batch's rows are merged:
 *   facts       a version at (lsn, pos), is_deleted, carrying the values of the version it
 *               ends (source_op 't' for a truncate, 'a' for absent from a snapshot);
 *   dimensions  a tombstone at (lsn, pos), the values kept. An inferred member (source_lsn
 *               0/0: only facts have named it) is marked deleted but left at 0/0: if its real
 *               row still arrives, it fills the row in and the end is evaluated again for it,
 *               so the tombstone carries its values; if it never does (it was gone before the
 *               snapshot read it), the row stays ended; if it arrives after the end, the
 *               row was never there to end and the end no longer counts it. An inferred
 *               member that a fact of the same load names after the end is not reached at
 *               all: the source's foreign key says the row existed at that fact, so an end
 *               before it found the row not yet made, not gone (a shard's facts loading
 *               before the other shard's dimension rows makes many such members).
 * Only versions before (lsn, pos) end: a change after it (same transaction or later) stays.
 *
 * Exactly once: each end is recorded in totes_row_ends (one row however many shards carry
 * it); one already recorded is not applied again, so a re-delivery or a replay is a no-op.
 * Its rows_ended counts each row it ended once: a fact's by its end version (one per key and
 * position), a dimension's by totes_row_end_keys, one row per key the end reached, however
 * often the end is evaluated again for it.
 * Order of arrival does not matter: when a batch brings versions older than a recorded end
 * (a row's shard lagging behind the shard whose copy of the end loaded first), that end is
 * evaluated again for those keys, so the row still ends, or no longer does if its own delete
 * came first.
 */
import { compareLsn, lsnToBigInt } from '../formats/change-event.ts';
import {
  DERIVED,
  DERIVED_TABLES,
  LOAD_TABLES,
  type LoadRow,
  type LoadTableName,
  onePerKey,
  type RowsEnd,
  type StreamPosition,
  versionBefore,
  versionBeforeSql,
} from '../formats/load-tables.ts';
import { log } from '../lib/log.ts';
import type pg from '../lib/pg.ts';
import { historyName } from './history-sql.ts';
import { type NewestNaming, newestPerKeySql, propagationSql, versionJustBeforeSql } from './merge-sql.ts';

/** Part of the warehouse DDL (search_path set to the schema). */
export const ROW_ENDS_DDL = `CREATE TABLE IF NOT EXISTS totes_row_ends (
  load_table text NOT NULL, source_lsn pg_lsn NOT NULL, source_pos int NOT NULL, cause text NOT NULL,
  key_after int, key_through int, present jsonb NOT NULL, source_commit_time timestamptz NOT NULL,
  rows_ended int NOT NULL DEFAULT 0, recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (load_table, source_lsn, source_pos));
CREATE TABLE IF NOT EXISTS totes_row_end_keys (
  load_table text NOT NULL, source_lsn pg_lsn NOT NULL, source_pos int NOT NULL, key int NOT NULL,
  before_lsn pg_lsn NOT NULL, before_pos int NOT NULL, was_live boolean NOT NULL,
  PRIMARY KEY (load_table, source_lsn, source_pos, key));
CREATE INDEX IF NOT EXISTS totes_row_end_keys_inferred ON totes_row_end_keys (load_table, key) WHERE before_lsn = '0/0';`;

export interface RowEndsApplied {
  /** Truncates applied for the first time. */
  truncates: number;
  /** Rows ended, net of ends taken back by a late delete. */
  rows: number;
}

const q = (name: string) => `"${name}"`;

/** The end's position, $1 and $2. */
const END: [string, string] = ['$1::pg_lsn', '$2::int'];

/**
 * Which rows of `t` (alias `a`) an end reaches. $1 lsn, $2 pos, $3 after, $4 through, $5 the
 * present runs (jsonb), $6 only these keys (null: all).
 */
function scope(a: string, key: string): string {
  const k = `${a}.${q(key)}`;
  return `${versionBeforeSql(a, END)}
     AND ($3::int IS NULL OR ${k} > $3::int) AND ($4::int IS NULL OR ${k} <= $4::int)
     AND ($6::int[] IS NULL OR ${k} = ANY($6::int[]))
     AND NOT EXISTS (SELECT 1 FROM present WHERE present.k = ${k})`;
}

const PRESENT = `WITH present AS MATERIALIZED (
  SELECT generate_series((r->>0)::int, (r->>1)::int) AS k FROM jsonb_array_elements($5::jsonb) r)`;

/**
 * The statement ending rows of one load table; RETURNING the keys it ended. A dimension's
 * keys go into totes_row_end_keys ($7 the load table) with the version each row held before
 * the end; a key already there (an inferred member filled in since) is not one more row.
 * Inferred members in $8 are spared (namedAfter).
 */
export function endRowsSql(table: LoadTableName, schema: string): string {
  const { kind, key } = LOAD_TABLES[table];
  const t = `"${schema}".${q(table)}`;
  if (kind === 'dim') {
    return `${PRESENT},
      reached AS (SELECT a.${q(key)} AS key, a.source_lsn, a.source_pos FROM ${t} a WHERE NOT a.is_deleted AND ${scope('a', key)}
                    AND NOT (a.source_lsn = '0/0' AND a.${q(key)} = ANY($8::int[]))),
      ended AS (
        UPDATE ${t} a SET is_deleted = true,
               source_lsn = CASE WHEN a.source_lsn = '0/0' THEN a.source_lsn ELSE $1::pg_lsn END,
               source_pos = CASE WHEN a.source_lsn = '0/0' THEN a.source_pos ELSE $2::int END
          FROM reached r WHERE a.${q(key)} = r.key
        RETURNING a.${q(key)} AS key, r.source_lsn AS before_lsn, r.source_pos AS before_pos)
      INSERT INTO "${schema}".totes_row_end_keys AS k (load_table, source_lsn, source_pos, key, before_lsn, before_pos, was_live)
      SELECT $7::text, $1::pg_lsn, $2::int, key, before_lsn, before_pos, true FROM ended
      ON CONFLICT (load_table, source_lsn, source_pos, key) DO UPDATE SET before_lsn = excluded.before_lsn, before_pos = excluded.before_pos, was_live = true
      RETURNING key`;
  }
  return endVersionsSql(table, schema, table);
}

/**
 * A fact's ends in a version log (`target`: the fact table, or a dimension's history, which also
 * spares the inferred members in $9 as endRowsSql does): for each key reached whose newest
 * version before the end is live, a version at the end, is_deleted, with the values it ends.
 * $7 the source_op, $8 the commit time.
 */
function endVersionsSql(table: LoadTableName, schema: string, target: string): string {
  const { key, columns } = LOAD_TABLES[table];
  const t = `"${schema}".${q(target)}`;
  const attrs = Object.keys(columns).filter((c) => c !== key);
  const spare = target === table ? '' : ` AND NOT (p.source_lsn = '0/0' AND p.${q(key)} = ANY($9::int[]))`;
  return `${PRESENT}
    INSERT INTO ${t} (${q(key)}, ${attrs.map(q).join(', ')}, source_op, source_lsn, source_pos, source_commit_time, is_deleted)
    SELECT p.${q(key)}, ${attrs.map((c) => `p.${q(c)}`).join(', ')}, $7::text, $1::pg_lsn, $2::int, $8::timestamptz AT TIME ZONE 'UTC', true
      FROM (${newestPerKeySql(key, `${t} a WHERE ${scope('a', key)}`, 'a')}) p
     WHERE NOT p.is_deleted${spare}
    ON CONFLICT (${q(key)}, source_lsn, source_pos) DO NOTHING
    RETURNING ${q(key)} AS key`;
}

/**
 * For some keys, a fact's end versions at one position that no longer end the version before
 * them as it now is (that version was deleted, or changed by a version that arrived late):
 * taken back, and endRowsSql puts the right one in. One still right is left alone. `target`:
 * a dimension's history, whose ends are taken back the same way.
 */
function takeBackSql(table: LoadTableName, schema: string, target: string = table): string {
  const { key, columns } = LOAD_TABLES[table];
  const t = `"${schema}".${q(target)}`;
  const attrs = Object.keys(columns).filter((c) => c !== key);
  return `DELETE FROM ${t} e WHERE e.${q(key)} = ANY($3::int[]) AND e.source_lsn = $1::pg_lsn AND e.source_pos = $2::int
       AND NOT EXISTS (SELECT 1 FROM (${versionJustBeforeSql(t, key, 'p', `e.${q(key)}`, END)}) p
                        WHERE NOT p.is_deleted AND (${attrs.map((c) => `p.${q(c)}`).join(', ')}) IS NOT DISTINCT FROM (${attrs.map((c) => `e.${q(c)}`).join(', ')}))
     RETURNING e.${q(key)} AS key`;
}

/**
 * For some keys, the version of a dimension row just before an end, as a late load shows it
 * ($4..$7: key, lsn, pos, op of the newest merged version before the end): a key the end
 * reached counts as ended only while the row was live before it, so a row whose own delete
 * arrives late no longer counts, as a fact's end is taken back.
 */
function dimensionBeforeSql(schema: string): string {
  return `UPDATE "${schema}".totes_row_end_keys k SET before_lsn = v.lsn, before_pos = v.pos, was_live = v.op <> 'd'
      FROM unnest($4::int[], $5::pg_lsn[], $6::int[], $7::text[]) AS v(key, lsn, pos, op)
     WHERE k.load_table = $1 AND k.source_lsn = $2::pg_lsn AND k.source_pos = $3 AND k.key = v.key
       AND ${versionBeforeSql(['k.before_lsn', 'k.before_pos'], ['v.lsn', 'v.pos'])}`;
}

/** Dimension rows an end has ended, as totes_row_end_keys holds them. */
async function dimensionRowsEnded(db: pg.PoolClient, schema: string, e: RowsEnd): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n FROM "${schema}".totes_row_end_keys WHERE load_table = $1 AND source_lsn = $2::pg_lsn AND source_pos = $3 AND was_live`,
    [e.table, e.lsn, e.pos],
  );
  return rows[0].n as number;
}

/**
 * Inferred members an end reached whose real row arrived after the end (a fact named the row
 * before its own shard brought it): not rows the end ended, so its rows_ended loses them.
 * $1..$4: load table, key, lsn, pos of the oldest merged version of each key. RETURNING how
 * many each end lost.
 */
function filledAfterSql(schema: string): string {
  return `WITH filled AS (
      UPDATE "${schema}".totes_row_end_keys k SET was_live = false
        FROM unnest($1::text[], $2::int[], $3::pg_lsn[], $4::int[]) AS v(load_table, key, lsn, pos)
       WHERE k.load_table = v.load_table AND k.key = v.key AND k.before_lsn = '0/0' AND k.was_live AND ${versionBeforeSql('k', ['v.lsn', 'v.pos'])}
      RETURNING k.load_table, k.source_lsn, k.source_pos),
    per_end AS (SELECT load_table, source_lsn, source_pos, count(*)::int AS n FROM filled GROUP BY 1, 2, 3)
    UPDATE "${schema}".totes_row_ends e SET rows_ended = e.rows_ended - p.n FROM per_end p
     WHERE e.load_table = p.load_table AND e.source_lsn = p.source_lsn AND e.source_pos = p.source_pos
    RETURNING p.n`;
}

/** One version of each key of `rows`, the one `better` prefers, as unnest arrays (key, lsn, pos, op). */
function unnestOnePerKey(rows: LoadRow[], key: string, better: (a: LoadRow, b: LoadRow) => boolean): [number[], string[], number[], string[]] {
  const versions = [...onePerKey(rows, key, better).values()];
  return [versions.map((r) => r[key] as number), versions.map((r) => r.source_lsn), versions.map((r) => r.source_pos), versions.map((r) => r.source_op)];
}

/**
 * Take back the ends of inferred members whose real rows came after them; returns the rows no
 * longer counted. Only keys an end reached while they were placeholders can be such rows: those
 * few are read first (a partial index), so a load's many other dimension rows are never sent.
 */
async function uncountFilledAfter(db: pg.PoolClient, schema: string, merged: Map<LoadTableName, LoadRow[]>): Promise<number> {
  const dims = [...merged].filter(([table, rows]) => LOAD_TABLES[table].kind === 'dim' && rows.length > 0);
  if (dims.length === 0) return 0;
  const { rows: placeholders } = await db.query(
    `SELECT DISTINCT load_table, key FROM "${schema}".totes_row_end_keys WHERE before_lsn = '0/0' AND was_live AND load_table = ANY($1::text[])`,
    [dims.map(([table]) => table)],
  );
  if (placeholders.length === 0) return 0;
  const ended = new Set(placeholders.map((p) => `${p.load_table}:${p.key}`));
  const tables: string[] = [];
  const keys: number[] = [];
  const lsns: string[] = [];
  const poss: number[] = [];
  for (const [table, rows] of dims) {
    const key = LOAD_TABLES[table].key;
    const [k, lsn, pos] = unnestOnePerKey(
      rows.filter((r) => ended.has(`${table}:${r[key]}`)),
      key,
      versionBefore,
    );
    for (let i = 0; i < k.length; i++) {
      tables.push(table);
      keys.push(k[i]);
      lsns.push(lsn[i]);
      poss.push(pos[i]);
    }
  }
  if (keys.length === 0) return 0;
  const { rows: ends } = await db.query(filledAfterSql(schema), [tables, keys, lsns, poss]);
  return ends.reduce((n, e) => n + (e.n as number), 0);
}

/** An end's stream position, to compare with rows' (versionBefore: the LSN's text differs between the stream and Postgres). */
const positionOf = (e: Pick<RowsEnd, 'lsn' | 'pos'>): StreamPosition => ({ source_lsn: e.lsn, source_pos: e.pos });
const idOf = (e: Pick<RowsEnd, 'table' | 'lsn' | 'pos'>) => `${e.table}@${lsnToBigInt(e.lsn)}:${e.pos}`;

/**
 * Apply the ends a load brings, and evaluate again, for the keys concerned, recorded ends that
 * `merged` rows predate. Inside the load transaction `db` (holding the loaders' lock), after
 * `merged` has been merged.
 */
export async function applyRowEnds(
  db: pg.PoolClient,
  schema: string,
  ends: RowsEnd[],
  merged: Map<LoadTableName, LoadRow[]>,
  newestNaming: () => NewestNaming = () => new Map(),
): Promise<RowEndsApplied> {
  const s = `"${schema}"`;
  const work = new Map<string, RowsEnd & { fresh: boolean }>();
  for (const e of ends) {
    if (work.has(idOf(e))) continue;
    const recorded = await db.query(
      `INSERT INTO ${s}.totes_row_ends (load_table, source_lsn, source_pos, cause, key_after, key_through, present, source_commit_time)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
      [e.table, e.lsn, e.pos, e.cause, e.after, e.through, JSON.stringify(e.present), e.commitTime],
    );
    if (recorded.rowCount) work.set(idOf(e), { ...e, fresh: true });
  }
  // recorded ends later than the oldest version a merged table received: those rows may predate them
  const oldest = [...merged].filter(([, rows]) => rows.length > 0).map(([table, rows]) => ({ table, ...oldestVersion(rows) }));
  if (oldest.length > 0) {
    const later = await db.query(
      `SELECT e.load_table AS "table", e.source_lsn::text AS lsn, e.source_pos AS pos, e.cause, e.key_after AS after, e.key_through AS through,
              e.present, e.source_commit_time AS "commitTime"
         FROM unnest($1::text[], $2::pg_lsn[], $3::int[]) AS m(load_table, lsn, pos)
         JOIN ${s}.totes_row_ends e ON e.load_table = m.load_table AND ${versionBeforeSql(['m.lsn', 'm.pos'], 'e')}`,
      [oldest.map((o) => o.table), oldest.map((o) => o.lsn), oldest.map((o) => o.pos)],
    );
    for (const e of later.rows as RowsEnd[]) if (!work.has(idOf(e))) work.set(idOf(e), { ...e, fresh: false });
  }

  const applied: RowEndsApplied = { truncates: 0, rows: -(await uncountFilledAfter(db, schema, merged)) };
  let naming: NewestNaming | undefined; // a pass over the facts: made when a dimension's end first needs it
  // rows of tables others derive columns from (DERIVED), ended: those columns are derived again
  const endedKeys = new Map<LoadTableName, number[]>(DERIVED_TABLES.map((t) => [DERIVED[t].from, []]));
  const ordered = [...work.values()].sort((a, b) => compareLsn(a.lsn, b.lsn) || a.pos - b.pos);
  for (const e of ordered) {
    const at = positionOf(e);
    const key = LOAD_TABLES[e.table].key;
    // a fresh end reaches every row; a recorded one, the keys of merged rows older than it
    const keys = e.fresh ? null : [...new Set((merged.get(e.table) ?? []).filter((r) => versionBefore(r, at)).map((r) => r[key] as number))];
    if (keys?.length === 0) continue;
    const fact = LOAD_TABLES[e.table].kind === 'fact';
    const params: unknown[] = [e.lsn, e.pos, e.after, e.through, JSON.stringify(e.present), keys];
    let net: number;
    let ended: number[];
    if (fact) {
      const takenBack = keys ? ((await db.query(takeBackSql(e.table, schema), [e.lsn, e.pos, keys])).rowCount ?? 0) : 0;
      params.push(e.cause === 'truncate' ? 't' : 'a', e.commitTime);
      ended = (await db.query(endRowsSql(e.table, schema), params)).rows.map((r) => r.key as number);
      net = ended.length - takenBack;
    } else {
      const counted = e.fresh ? 0 : await dimensionRowsEnded(db, schema, e);
      const earlier = (merged.get(e.table) ?? []).filter((r) => versionBefore(r, at));
      if (!e.fresh) await db.query(dimensionBeforeSql(schema), [e.table, e.lsn, e.pos, ...unnestOnePerKey(earlier, key, (a, b) => versionBefore(b, a))]);
      naming ??= newestNaming();
      const spared = namedAfter(naming, e.table, at);
      ended = (await db.query(endRowsSql(e.table, schema), [...params, e.table, spared])).rows.map((r) => r.key as number);
      // the history's version at the end, as a fact's
      const history = historyName(e.table);
      if (keys) await db.query(takeBackSql(e.table, schema, history), [e.lsn, e.pos, keys]);
      await db.query(endVersionsSql(e.table, schema, history), [...params, e.cause === 'truncate' ? 't' : 'a', e.commitTime, spared]);
      // a fresh end has no keys recorded but those it just reached, each live before it
      net = e.fresh ? ended.length : (await dimensionRowsEnded(db, schema, e)) - counted;
    }
    endedKeys.get(e.table)?.push(...ended);
    applied.rows += net;
    if (net !== 0)
      await db.query(`UPDATE ${s}.totes_row_ends SET rows_ended = rows_ended + $4 WHERE load_table = $1 AND source_lsn = $2 AND source_pos = $3`, [
        e.table,
        e.lsn,
        e.pos,
        net,
      ]);
    if (e.fresh && e.cause === 'truncate') {
      applied.truncates++;
      log.warn({ table: e.table, lsn: e.lsn, pos: e.pos, rows: ended.length }, 'TRUNCATE applied: every row of the table before it ended');
    } else if (e.fresh && net > 0) {
      // net, not every key the statement reached: placeholders whose real rows come after the end were never there to end
      log.warn(
        { table: e.table, lsn: e.lsn, after: e.after, through: e.through, rows: net },
        'a snapshot did not find rows the warehouse had (deleted while nothing streamed): ended them',
      );
    } else if (net !== 0) {
      log.info({ table: e.table, lsn: e.lsn, cause: e.cause, rows: net }, 'an end evaluated again for rows that arrived after it');
    }
  }
  const propagate = propagationSql(schema);
  for (const table of DERIVED_TABLES) {
    const sources = endedKeys.get(DERIVED[table].from)!;
    if (sources.length) await db.query(propagate[table], [[], sources]);
  }
  return applied;
}

/** Keys of `dim` that a merged fact version after `at` names: the row existed then, so an end at `at` cannot have found it gone. */
function namedAfter(naming: NewestNaming, dim: LoadTableName, at: StreamPosition): number[] {
  const keys: number[] = [];
  for (const [k, newest] of naming.get(dim) ?? []) if (versionBefore(at, newest)) keys.push(k);
  return keys;
}

function oldestVersion(rows: LoadRow[]): { lsn: string; pos: number } {
  let best = rows[0];
  for (const r of rows) if (versionBefore(r, best)) best = r;
  return { lsn: best.source_lsn, pos: best.source_pos };
}
