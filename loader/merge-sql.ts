/**
 * SQL that merges one staged load table into the warehouse. Generated from LOAD_TABLES so
 * the column lists exist once. Every statement is idempotent:
 *   dimensions move only forward in (source_lsn, source_pos): a re-delivered or late change
 *   never takes a row back to an older value;
 *   facts append one version per (natural id, source_lsn, source_pos), so a change delivered
 *   twice, in one batch or in two, appends once.
 */
import {
  DERIVED,
  DERIVED_TABLES,
  type Derivation,
  type DerivedTableName,
  independentVersionSql,
  LOAD_TABLES,
  REFERENCES,
  type ColumnType,
  type LoadRow,
  type LoadTableName,
  type SqlPosition,
  type StreamPosition,
  versionBefore,
  versionBeforeSql,
  versionOrderSql,
} from '../formats/load-tables.ts';
import { loadColumns } from '../formats/parquet.ts';

const SQL_TYPE: Record<ColumnType, string> = { int: 'int', text: 'text', money: 'numeric(10,2)', date: 'date', time: 'time(3)', bool: 'boolean' };
const PROVENANCE_SQL_TYPE: Record<string, string> = { source_lsn: 'pg_lsn', source_commit_time: 'timestamptz' };

const q = (name: string) => `"${name}"`;

export function stageName(table: LoadTableName): string {
  return `stage_${table}`;
}

/** Column name and SQL type of each staged column, in load order. */
export function stageColumns(table: LoadTableName): [string, string][] {
  return loadColumns(table).map(([name, type]) => [name, PROVENANCE_SQL_TYPE[name] ?? SQL_TYPE[type]]);
}

/** Temp staging table, filled by COPY (stage.ts). */
export function stageTableSql(table: LoadTableName): string {
  const cols = stageColumns(table);
  return `CREATE TEMP TABLE IF NOT EXISTS ${stageName(table)} (${cols.map(([n, t]) => `${q(n)} ${t}`).join(', ')}) ON COMMIT DELETE ROWS`;
}

/** The newest version of each key of `from` (a table with its alias, and any condition on it). */
export function newestPerKeySql(key: string, from: string, alias?: string): string {
  const k = alias ? `${alias}.${q(key)}` : q(key);
  return `SELECT DISTINCT ON (${k}) * FROM ${from} ORDER BY ${k}, ${versionOrderSql('newest first', alias)}`;
}

/** The version of the key `keyOf` names in `table` (as `alias`) just before the position `at`. */
export function versionJustBeforeSql(table: string, key: string, alias: string, keyOf: string, at: SqlPosition): string {
  return `SELECT * FROM ${table} ${alias} WHERE ${alias}.${q(key)} = ${keyOf} AND ${versionBeforeSql(alias, at)}
           ORDER BY ${versionOrderSql('newest first', alias)} LIMIT 1`;
}

/** Each version's place among its key's, oldest first: the wave it is applied in. */
const waveSql = (key: string) => `row_number() OVER (PARTITION BY ${q(key)} ORDER BY ${versionOrderSql('oldest first')}) AS wave`;

/** Keep the target's value where the change says the column is unchanged (TOAST). */
function valueOr(col: string, fallback: string): string {
  return `CASE WHEN position(',${col},' IN coalesce(s.unchanged, '')) > 0 THEN ${fallback}.${q(col)} ELSE s.${q(col)} END`;
}

/**
 * Whether row `t` is the tombstone of an end (row-ends.ts) that change `s` predates but the
 * version the end found does not: a change from a shard behind the one whose copy of the end
 * loaded first. The change is applied, and the end, evaluated again for the key, ends the
 * version it makes (or no longer counts the row, when the change is its own delete).
 */
function endedBefore(table: LoadTableName, schema: string): string {
  return `t.is_deleted AND EXISTS (SELECT 1 FROM "${schema}".totes_row_end_keys k
     WHERE k.load_table = '${table}' AND k.key = t.${q(LOAD_TABLES[table].key)} AND k.source_lsn = t.source_lsn AND k.source_pos = t.source_pos
       AND ${versionBeforeSql(['k.before_lsn', 'k.before_pos'], 's')})`;
}

/**
 * Dimension upsert: the latest change per key wins if newer than what the row holds (or than
 * the version an end's tombstone ended: endedBefore); a delete
 * keeps the row's values (a tombstone keeps those of the version it ends). When a staged change
 * takes values from an earlier change to the same key in the same load (unchanged TOAST
 * columns, a delete: stage.ts keysInWaves), the changes apply one wave per version ($1 = wave).
 */
export function mergeDimensionSql(table: LoadTableName, schema: string, inWaves: boolean): string[] {
  const { key, columns } = LOAD_TABLES[table];
  const t = `"${schema}".${q(table)}`;
  const attrs = Object.keys(columns).filter((c) => c !== key);
  const changes = inWaves
    ? `(SELECT * FROM (SELECT *, ${waveSql(key)} FROM ${stageName(table)}) w WHERE wave = $1)`
    : `(${newestPerKeySql(key, stageName(table))})`;
  return [
    `UPDATE ${t} t SET ${attrs.map((c) => `${q(c)} = CASE WHEN s.source_op = 'd' THEN t.${q(c)} ELSE ${valueOr(c, 't')} END`).join(', ')},
       source_lsn = s.source_lsn, source_pos = s.source_pos, is_deleted = (s.source_op = 'd')
     FROM ${changes} s
     WHERE t.${q(key)} = s.${q(key)} AND (${versionBeforeSql('t', 's')} OR ${endedBefore(table, schema)})`,
    `INSERT INTO ${t} (${q(key)}, ${attrs.map(q).join(', ')}, source_lsn, source_pos, is_deleted)
     SELECT s.${q(key)}, ${attrs.map((c) => `s.${q(c)}`).join(', ')}, s.source_lsn, s.source_pos, s.source_op = 'd'
       FROM ${changes} s WHERE NOT EXISTS (SELECT 1 FROM ${t} t WHERE t.${q(key)} = s.${q(key)})`,
  ];
}

/**
 * Fact append. `independent` appends, in one statement, every insert and update that carries
 * all its values: they need nothing from the version before them. `dependent` handles the rest
 * one wave per version of a key ($1 = wave, numbered over the dependent rows), so each sees the
 * version before it: a delete carries the values of the version it ends; an update with
 * unchanged TOAST columns keeps theirs; a snapshot read ('r') appends only when it differs from
 * the version before it, so a re-snapshot adds nothing for rows that did not change. Versions
 * are ordered by (source_lsn, source_pos), never by arrival, so a snapshot row that arrives
 * after a newer change never becomes "current". `target`: another table of the same columns
 * (a dimension's history, history-sql.ts).
 */
export function appendFactSql(table: LoadTableName, schema: string, target: string = table): { independent: string; dependent: string } {
  const { key, columns } = LOAD_TABLES[table];
  const t = `"${schema}".${q(target)}`;
  const attrs = Object.keys(columns).filter((c) => c !== key);
  const insert = `INSERT INTO ${t} (${q(key)}, ${attrs.map(q).join(', ')}, source_op, source_lsn, source_pos, source_commit_time, is_deleted)`;
  const independent = independentVersionSql('s');
  return {
    independent: `${insert}
      SELECT s.${q(key)}, ${attrs.map((c) => `s.${q(c)}`).join(', ')}, s.source_op, s.source_lsn, s.source_pos, s.source_commit_time AT TIME ZONE 'UTC', false
        FROM ${stageName(table)} s WHERE ${independent}
      ON CONFLICT (${q(key)}, source_lsn, source_pos) DO NOTHING`,
    dependent: `${insert}
      SELECT s.${q(key)}, ${attrs.map((c) => `CASE WHEN s.source_op = 'd' THEN p.${q(c)} ELSE ${valueOr(c, 'p')} END`).join(', ')},
             s.source_op, s.source_lsn, s.source_pos, s.source_commit_time AT TIME ZONE 'UTC', s.source_op = 'd'
        FROM (SELECT *, ${waveSql(key)} FROM ${stageName(table)} s WHERE NOT ${independent}) s
        LEFT JOIN LATERAL (${versionJustBeforeSql(t, key, 'f', `s.${q(key)}`, 's')}) p ON true
       WHERE s.wave = $1
         AND (s.source_op <> 'r' OR p.${q(key)} IS NULL OR p.is_deleted
              OR (${attrs.map((c) => `p.${q(c)}`).join(', ')}) IS DISTINCT FROM (${attrs.map((c) => `s.${q(c)}`).join(', ')}))
      ON CONFLICT (${q(key)}, source_lsn, source_pos) DO NOTHING`,
  };
}

/** What a load's fact versions name. */
export interface FactReferences {
  /** Every date they hold (for dim_date), sorted. */
  dates: string[];
  /** Per dimension, every key they reference, sorted. */
  members: Map<LoadTableName, number[]>;
}

/** Per dimension, each key the facts name with the newest version naming it (row-ends.ts: an end before it cannot have found the row gone). */
export type NewestNaming = Map<LoadTableName, Map<number, StreamPosition>>;

/**
 * What the facts name, found in one pass here, so the warehouse inserts a few distinct values
 * instead of scanning each staged column.
 */
export function referencedKeys(tables: Map<LoadTableName, LoadRow[]>): FactReferences {
  const dates = new Set<string>();
  const members = new Map<LoadTableName, Set<number>>();
  for (const [table, rows] of tables) {
    const dateCols = Object.entries(LOAD_TABLES[table].columns).flatMap(([c, t]) => (t === 'date' ? [c] : []));
    const refs = referencesOf(table, members, () => new Set<number>());
    // neighbouring rows mostly name the same dates: a date equal to the row before's is not looked up again
    const lastDates = dateCols.map(() => null as unknown);
    for (const r of rows) {
      for (let i = 0; i < dateCols.length; i++) {
        const d = r[dateCols[i]];
        if (d == null || d === lastDates[i]) continue;
        dates.add(d as string);
        lastDates[i] = d;
      }
      for (const [col, keys] of refs) {
        const k = r[col] as number | null;
        if (k != null) keys.add(k);
      }
    }
  }
  return {
    dates: [...dates].sort(),
    members: new Map([...members].map(([dim, keys]) => [dim, [...keys].sort((a, b) => a - b)])),
  };
}

/** The newest version naming each dimension key, of the facts among `tables`: asked only when a load applies ends (a pass of its own). */
export function newestNaming(tables: Map<LoadTableName, LoadRow[]>): NewestNaming {
  const newest: NewestNaming = new Map();
  for (const [table, rows] of tables) {
    const refs = referencesOf(table, newest, () => new Map<number, StreamPosition>());
    for (const r of rows) {
      for (const [col, keys] of refs) {
        const k = r[col] as number | null;
        if (k == null) continue;
        const seen = keys.get(k);
        if (seen === undefined || versionBefore(seen, r)) keys.set(k, r);
      }
    }
  }
  return newest;
}

/** A table's reference columns, each with the entry of `byDimension` for the dimension it names (made when missing). */
function referencesOf<T>(table: LoadTableName, byDimension: Map<LoadTableName, T>, make: () => T): (readonly [string, T])[] {
  return Object.entries(REFERENCES[table] ?? {}).map(([col, dim]) => {
    if (!byDimension.has(dim)) byDimension.set(dim, make());
    return [col, byDimension.get(dim)!] as const;
  });
}

/** Placeholder ("inferred member") rows for the dimension keys in $1 the warehouse lacks. */
export function inferredMembersSql(dim: LoadTableName, schema: string): string {
  return `INSERT INTO "${schema}".${q(dim)} (${q(LOAD_TABLES[dim].key)}) SELECT unnest($1::int[]) ON CONFLICT DO NOTHING`;
}

/** dim_date rows for the dates in $1 (ISO day of week, English names). */
export function datesSql(schema: string): string {
  return `INSERT INTO "${schema}".dim_date (date_id, year, month, day, day_of_week, day_name, month_name, quarter)
    SELECT d, extract(year FROM d), extract(month FROM d), extract(day FROM d), extract(isodow FROM d),
           trim(to_char(d, 'Day')), trim(to_char(d, 'Month')), extract(quarter FROM d)
      FROM unnest($1::date[]) AS d ON CONFLICT DO NOTHING`;
}

/**
 * Per derived dimension (DERIVED), the statement deriving its columns again for the keys touched:
 * $1 its own keys, $2 the keys of the table they come from. An ended source row derives nulls.
 */
export function propagationSql(schema: string): Record<DerivedTableName, string> {
  const s = `"${schema}"`;
  const sql = (table: DerivedTableName) => {
    const { from, by, columns } = DERIVED[table] as Derivation;
    const key = q(LOAD_TABLES[table].key);
    const derived = Object.keys(columns).map(q);
    return `UPDATE ${s}.${q(table)} d SET ${derived.map((c) => `${c} = x.${c}`).join(', ')}
      FROM (SELECT t.${key}, ${Object.entries(columns)
        .map(([c, f]) => `f.${q(f)} AS ${q(c)}`)
        .join(', ')} FROM ${s}.${q(table)} t
              LEFT JOIN ${s}.${q(from)} f ON f.${q(LOAD_TABLES[from].key)} = t.${q(by)} AND NOT f.is_deleted
             WHERE t.${key} = ANY($1::int[]) OR t.${q(by)} = ANY($2::int[])) x
     WHERE d.${key} = x.${key} AND (${derived.map((c) => `d.${c}`).join(', ')}) IS DISTINCT FROM (${derived.map((c) => `x.${c}`).join(', ')})`;
  };
  return Object.fromEntries(DERIVED_TABLES.map((t) => [t, sql(t)])) as Record<DerivedTableName, string>;
}
