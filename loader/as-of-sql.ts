/**
 * The warehouse as of a source commit. `SET totes.as_of = '16/B374D848'` (a commit LSN) or
 * `= '2026-11-30 23:59:59'` (a source commit time, UTC) and the schema as_of (beside public;
 * `<schema>_as_of` beside another warehouse schema) shows every star table as it stood then:
 * the same names and columns as the public tables, read only from versions with source_lsn at
 * or before the point. Unset, the point is the warehouse's own watermark (totes_freshness),
 * so no source transaction is ever half visible; a point past it is an error saying how far
 * the warehouse has loaded.
 *   dimensions   each key's newest history version at the point (tombstones kept, as in the
 *                public table), derived columns from the derived-from table's version then;
 *   facts        each key's newest version at the point, deleted ones left out (as `_current`);
 *   dim_date     as it is.
 * Beside the tables (search_path's schema):
 *   totes_commits          each loaded source transaction's commit LSN and time: a time's point
 *                          is the newest transaction committed at or before it;
 *   totes_as_of_point      the point as of which as_of reads (one row, lsn);
 *   <dim>_versions         each dimension version as analysts know them (SCD type 2):
 *                          valid_from, valid_to (commit times), valid_from_lsn, valid_to_lsn,
 *                          is_current; deleted versions left out (they close the one before);
 *   <fact>_at_time         every fact version with the columns of each dimension it names as
 *                          they stood when the fact's transaction committed.
 * Views and functions name tables through the catalogue, not by text, so a schema switched in
 * under another name (replay's switch-in) keeps reading its own tables.
 */
import { DERIVED, type Derivation, FACT_TABLES, LOAD_TABLES, type LoadRow, type LoadTableName, REFERENCES, type RowsEnd } from '../formats/load-tables.ts';
import { HISTORY_TABLES, historyColumns, historyName } from './history-sql.ts';
import { newestPerKeySql } from './merge-sql.ts';
import { warehouseColumns } from './warehouse-columns.ts';

/** The schema of the as-of views of a warehouse schema. */
export const asOfSchema = (schema: string) => (schema === 'public' ? 'as_of' : `${schema}_as_of`);

const LSN_TEXT = `'^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$'`;

const POINT_DDL = `CREATE TABLE IF NOT EXISTS totes_commits (
  source_lsn pg_lsn PRIMARY KEY, source_commit_time timestamp(6) NOT NULL);
CREATE INDEX IF NOT EXISTS totes_commits_time ON totes_commits (source_commit_time, source_lsn);
-- totes.as_of as a UTC commit time (null when unset or an LSN)
CREATE OR REPLACE FUNCTION totes_as_of_time(setting text) RETURNS timestamp LANGUAGE plpgsql STABLE SET timezone = 'UTC' AS $f$
BEGIN
  IF setting IS NULL OR setting ~ ${LSN_TEXT} THEN RETURN NULL; END IF;
  RETURN setting::timestamptz AT TIME ZONE 'UTC';
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
  RAISE EXCEPTION 'totes.as_of = ''%'' is neither a source commit LSN (like 16/B374D848) nor a commit time (like 2026-11-30 23:59:59, UTC)', setting
    USING ERRCODE = 'invalid_parameter_value';
END $f$;
-- the point: the watermark when unset; an LSN or a time at or before it; else an error saying how far the warehouse has loaded.
-- Before since (when the initial snapshot of every table had loaded) some rows are not known: an error saying so.
CREATE OR REPLACE FUNCTION totes_as_of_lsn(setting text, at_time timestamp, by_time pg_lsn, loaded pg_lsn, loaded_time timestamptz,
                                           since pg_lsn, since_time timestamptz, unsnapshotted text)
  RETURNS pg_lsn LANGUAGE plpgsql STABLE SET timezone = 'UTC' AS $f$
DECLARE
  point pg_lsn;
BEGIN
  IF loaded IS NULL THEN
    RAISE EXCEPTION 'the warehouse has no watermark yet (a shard has loaded nothing): there is no point it is complete to'
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF unsnapshotted IS NOT NULL THEN
    RAISE EXCEPTION 'the warehouse''s history has not begun: the initial snapshot of % has not loaded yet, so no point is complete', unsnapshotted
      USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'wait for the snapshot to load (totes status)';
  END IF;
  IF setting IS NULL THEN point := loaded;
  ELSIF at_time IS NULL AND setting::pg_lsn <= loaded THEN point := setting::pg_lsn;
  ELSIF at_time IS NOT NULL AND at_time <= loaded_time AT TIME ZONE 'UTC' THEN point := least(coalesce(by_time, '0/0'), loaded);
  ELSE
    RAISE EXCEPTION 'totes.as_of = ''%'' is past what the warehouse has loaded: every source transaction up to LSN % (committed % UTC), none later for certain',
      setting, loaded, coalesce((loaded_time AT TIME ZONE 'UTC')::text, 'at an unknown time')
      USING ERRCODE = 'invalid_parameter_value', HINT = 'choose an earlier point, or leave totes.as_of unset for the newest complete one';
  END IF;
  IF point < since THEN
    RAISE EXCEPTION 'totes.as_of = ''%'' is before the warehouse''s history begins: the source is known from LSN % (committed % UTC), when the initial snapshot of every table had loaded; before it the values of rows not yet read are not known',
      coalesce(setting, 'unset: the watermark ' || loaded), since, (since_time AT TIME ZONE 'UTC')::text
      USING ERRCODE = 'invalid_parameter_value', HINT = 'choose a later point';
  END IF;
  RETURN point;
END $f$;
CREATE OR REPLACE VIEW totes_as_of_point AS
  SELECT totes_as_of_lsn(s.setting, s.at_time,
           (SELECT max(c.source_lsn) FROM totes_commits c WHERE c.source_commit_time <= s.at_time),
           f.watermark_lsn, f.watermark_commit_time, h.since, h.since_time, h.unsnapshotted) AS lsn
    FROM (SELECT setting, totes_as_of_time(setting) AS at_time
            FROM (SELECT nullif(current_setting('totes.as_of', true), '') AS setting) x) s,
         totes_freshness f,
         totes_history_start h;`;

/**
 * Where the warehouse's history begins: the LSN by which the initial snapshot of every table
 * had loaded (each table's first snapshot chunk reaching the end of its key space). Before it,
 * a row the snapshot had not read yet is not known. A warehouse whose stream carried no snapshot
 * (the source's tables were captured from their start) begins at 0/0; one whose snapshot is
 * under way names the tables still to come (unsnapshotted).
 */
const HISTORY_START_DDL = `CREATE OR REPLACE VIEW totes_history_start AS
  WITH t AS (SELECT name FROM unnest(ARRAY[${Object.keys(LOAD_TABLES)
    .map((t) => `'${t}'`)
    .join(', ')}]) AS name),
  done AS (SELECT DISTINCT ON (load_table) load_table, source_lsn, source_commit_time FROM totes_row_ends
            WHERE cause = 'snapshot' AND key_through IS NULL ORDER BY load_table, source_lsn),
  begun AS (SELECT EXISTS (SELECT 1 FROM totes_row_ends WHERE cause = 'snapshot') AS any)
  SELECT CASE WHEN NOT begun.any THEN '0/0'::pg_lsn WHEN m.unsnapshotted IS NULL THEN (SELECT max(source_lsn) FROM done) END AS since,
         CASE WHEN m.unsnapshotted IS NULL THEN (SELECT source_commit_time FROM done ORDER BY source_lsn DESC LIMIT 1) END AS since_time,
         m.unsnapshotted
    FROM begun, LATERAL (SELECT CASE WHEN begun.any THEN string_agg(t.name, ', ' ORDER BY t.name) END AS unsnapshotted
                           FROM t WHERE t.name NOT IN (SELECT load_table FROM done)) m;`;

/** Each key's newest version of `table` (a version log: a fact table or a history) at or before the LSN `point`. */
const versionsAtSql = (table: LoadTableName, log: string, point: string, also = 'true') =>
  newestPerKeySql(LOAD_TABLES[table].key, `${log} WHERE source_lsn <= ${point} AND ${also}`);

/**
 * Each key's newest history version at `point`, inferred members' placeholders left out: at a
 * point the warehouse is complete to, every row a fact names has a version of its own (the
 * source's foreign keys), so a placeholder there would show a row the source did not yet have.
 */
const historyAtSql = (table: LoadTableName, s: string, point: string) => versionsAtSql(table, `${s}.${historyName(table)}`, point, `source_op <> 'i'`);

/** A dimension as of `point`, its columns as the public table's: its version then, derived columns from the derived-from table's version then. */
function dimensionAtSql(table: LoadTableName, s: string, point: string): string {
  const derived = (DERIVED as Partial<Record<LoadTableName, Derivation>>)[table];
  const cols = warehouseColumns(table).map((c) => (c.from ? `f.${c.from} AS ${c.name}` : `d.${c.name}`));
  const from = derived
    ? `\n    LEFT JOIN (${historyAtSql(derived.from, s, point)}) f
           ON f.${LOAD_TABLES[derived.from].key} = d.${derived.by} AND NOT f.is_deleted`
    : '';
  return `SELECT ${cols.join(', ')}, d.source_lsn, d.source_pos, d.is_deleted
    FROM (${historyAtSql(table, s, point)}) d${from}`;
}

/** The views of the as-of schema, one per star table. */
function asOfViewsDdl(schema: string): string {
  const s = `"${schema}"`;
  const a = `"${asOfSchema(schema)}"`;
  const point = `(SELECT lsn FROM ${s}.totes_as_of_point)`;
  const views = [`CREATE OR REPLACE VIEW ${a}.dim_date AS SELECT * FROM ${s}.dim_date;`];
  for (const table of Object.keys(LOAD_TABLES) as LoadTableName[]) {
    if ('internal' in LOAD_TABLES[table]) continue;
    const body =
      LOAD_TABLES[table].kind === 'dim'
        ? dimensionAtSql(table, s, point)
        : `SELECT * FROM (${versionsAtSql(table, `${s}.${table}`, point)}) f WHERE NOT is_deleted`;
    views.push(`CREATE OR REPLACE VIEW ${a}.${table} AS\n  ${body};`);
  }
  return `CREATE SCHEMA IF NOT EXISTS ${a};\n${views.join('\n')}`;
}

/**
 * A key's first version when the row existed before the pipeline saw it (a snapshot read, or a
 * change to a row never read): it is taken as holding from the beginning (valid_from_lsn 0/0,
 * valid_from -infinity), the earliest values known standing for the unknown ones before, as an
 * initial load does in a type 2 dimension. So a fact older than its dimension's first version
 * (every order the initial snapshot read) joins that version instead of nothing.
 */
const HELD_FROM_THE_BEGINNING = `source_op <> 'c'`;

/** Each history as SCD type 2 rows. */
function versionsViewDdl(table: LoadTableName): string {
  const key = LOAD_TABLES[table].key;
  return `CREATE OR REPLACE VIEW ${table}_versions AS
  SELECT ${historyColumns(table).join(', ')}, source_op,
         (CASE WHEN first AND ${HELD_FROM_THE_BEGINNING} THEN '-infinity' ELSE source_commit_time END)::timestamp(6) AS valid_from, valid_to,
         CASE WHEN first AND ${HELD_FROM_THE_BEGINNING} THEN '0/0' ELSE source_lsn END AS valid_from_lsn, valid_to_lsn,
         valid_to_lsn IS NULL AS is_current, source_pos
    FROM (SELECT h.*, lead(source_commit_time) OVER w AS valid_to, lead(source_lsn) OVER w AS valid_to_lsn, lag(source_lsn) OVER w IS NULL AS first
            FROM ${historyName(table)} h WINDOW w AS (PARTITION BY ${key} ORDER BY source_lsn, source_pos)) v
   WHERE NOT is_deleted;`;
}

/**
 * Each fact version with the columns of the dimensions it names as they stood at its commit
 * (the dimension's newest version with source_lsn at or before the fact's: the whole source
 * transaction applied; none, and the dimension's first version held from the beginning: that
 * one), derived columns too. Dimension columns keep their names (none is shared between the
 * dimensions of one fact, held here).
 */
function atTimeViewDdl(fact: LoadTableName): string {
  const joins: string[] = [];
  const cols: string[] = [];
  const at = (table: LoadTableName, keyOf: string, alias: string) => {
    const versions = `${historyName(table)} h WHERE h.${LOAD_TABLES[table].key} = ${keyOf}`;
    return `LEFT JOIN LATERAL (SELECT * FROM (
        (SELECT h.*, 0 AS pick FROM ${versions} AND h.source_lsn <= f.source_lsn ORDER BY source_lsn DESC, source_pos DESC LIMIT 1)
        UNION ALL
        (SELECT * FROM (SELECT h.*, 1 AS pick FROM ${versions} ORDER BY source_lsn, source_pos LIMIT 1) e WHERE ${HELD_FROM_THE_BEGINNING})
      ) v ORDER BY pick LIMIT 1) ${alias} ON true`;
  };
  let n = 0;
  for (const [column, dim] of Object.entries(REFERENCES[fact] ?? {})) {
    const d = `d${++n}`;
    joins.push(at(dim, `f.${column}`, d));
    const derived = (DERIVED as Partial<Record<LoadTableName, Derivation>>)[dim];
    if (derived) joins.push(at(derived.from, `${d}.${derived.by}`, `${d}f`));
    for (const c of warehouseColumns(dim)) {
      if (c.name === LOAD_TABLES[dim].key) continue;
      cols.push(c.from ? `CASE WHEN NOT ${d}f.is_deleted THEN ${d}f.${c.from} END AS ${c.name}` : `${d}.${c.name}`);
    }
  }
  const names = cols.map((c) => c.split(' ').at(-1) ?? c);
  const shared = names.filter((c, i) => names.indexOf(c) !== i || c in LOAD_TABLES[fact].columns);
  if (shared.length > 0) throw new Error(`${fact}_at_time: dimension columns ${shared.join(', ')} clash`);
  return `CREATE OR REPLACE VIEW ${fact}_at_time AS
  SELECT f.*, ${cols.join(', ')}
    FROM ${fact} f
    ${joins.join('\n    ')};`;
}

/** The as-of DDL (search_path set to `schema`), after the tables' and histories'. */
export function asOfDdl(schema: string): string {
  return [HISTORY_START_DDL, POINT_DDL, ...HISTORY_TABLES.map(versionsViewDdl), ...FACT_TABLES.map(atTimeViewDdl), asOfViewsDdl(schema)].join('\n');
}

/** The source transactions a load brings (rows and ends), each once: [commit LSNs, commit times], for recordCommitsSql. */
export function commitsOf(tables: Map<LoadTableName, LoadRow[]>, ends: RowsEnd[]): [string[], string[]] {
  const seen = new Map<string, string>();
  for (const rows of tables.values()) {
    let last = '';
    // a transaction's rows come together: only a change of LSN is looked up
    for (const r of rows) if (r.source_lsn !== last) seen.set((last = r.source_lsn), r.source_commit_time);
  }
  for (const e of ends) seen.set(e.lsn, e.commitTime);
  return [[...seen.keys()], [...seen.values()]];
}

/** Record each source transaction's commit LSN and time once in totes_commits ($1, $2: commitsOf). */
export const recordCommitsSql = (schema: string) => `INSERT INTO "${schema}".totes_commits (source_lsn, source_commit_time)
  SELECT l, t AT TIME ZONE 'UTC' FROM unnest($1::pg_lsn[], $2::timestamptz[]) AS c(l, t) ON CONFLICT DO NOTHING`;
