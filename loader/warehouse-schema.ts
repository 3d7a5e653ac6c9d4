/**
 * The star-schema warehouse (data-model.md §2): ERD names and order first, then our own
 * provenance columns, documented in the README:
 *   source_lsn, source_pos   the (commit LSN, position) of the change the row came from;
 *                            facts are unique on (natural id, source_lsn, source_pos), which
 *                            is what makes a re-delivered change a no-op; dimensions only
 *                            move forward in (source_lsn, source_pos).
 *   source_op                c / u / d / r (r: snapshot read) on fact rows.
 *   source_commit_time       commit time of the source transaction (UTC).
 *   is_deleted               a fact version recording a source delete; on a dimension,
 *                            a tombstone (kept because fact history still references it).
 *   department_id            on dim_staff, legal_address_id on dim_counterparty: the join
 *                            keys the warehouse resolves department and address changes with.
 * Dimension rows whose source_lsn is 0/0 are inferred members: a fact arrived before its
 * dimension row (they travel on different shards) and the row is filled in when it arrives.
 */
import { DERIVED, type Derivation, FACT_TABLES, LOAD_TABLES, type LoadTable, type LoadTableName, REFERENCES } from '../formats/load-tables.ts';
import { asOfDdl } from './as-of-sql.ts';
import { historyDdl } from './history-sql.ts';
import { newestPerKeySql } from './merge-sql.ts';
import { VERSION_PROVENANCE, warehouseColumns } from './warehouse-columns.ts';
import { ROW_ENDS_DDL } from './row-ends.ts';

/** The star's tables, as data-model.md §2 names them: dim_date (the loader makes it) and every load table but the loader's own. */
type StarLoadTable = { [T in LoadTableName]: (typeof LOAD_TABLES)[T] extends { internal: true } ? never : T }[LoadTableName];
export type StarTable = 'dim_date' | StarLoadTable;
export const STAR_TABLES: readonly StarTable[] = [
  'dim_date',
  ...(Object.keys(LOAD_TABLES) as LoadTableName[]).filter((t): t is StarLoadTable => !('internal' in LOAD_TABLES[t])),
];

const PROVENANCE = `source_lsn pg_lsn NOT NULL DEFAULT '0/0', source_pos integer NOT NULL DEFAULT 0, is_deleted boolean NOT NULL DEFAULT false`;

/**
 * A load table's warehouse table: its columns (a dimension's derived ones after the column they
 * follow), provenance, and, on a dimension deriving columns, an index on the key it joins by.
 */
function tableDdl(table: LoadTableName): string {
  const { kind, key, record } = LOAD_TABLES[table] as LoadTable;
  const derived = (DERIVED as Partial<Record<LoadTableName, Derivation>>)[table];
  const cols = warehouseColumns(table).flatMap(({ name, type }) => {
    if (name !== key) return [`${name} ${type}`];
    return kind === 'fact' ? [`${record} serial PRIMARY KEY`, `${key} ${type} NOT NULL`] : [`${key} ${type} PRIMARY KEY`];
  });
  const provenance = kind === 'fact' ? `${VERSION_PROVENANCE}, UNIQUE (${key}, source_lsn, source_pos)` : PROVENANCE;
  const index = derived ? `\nCREATE INDEX IF NOT EXISTS ${table}_${derived.name} ON ${table} (${derived.by});` : '';
  return `CREATE TABLE IF NOT EXISTS ${table} (\n  ${cols.join(', ')},\n  ${provenance});${index}`;
}

/**
 * Every foreign key of the star: each fact's dimension keys and date columns. Named as Postgres
 * names an inline REFERENCES, so a warehouse created before they were declared apart has them.
 */
export function foreignKeys(): { table: LoadTableName; column: string; references: string; name: string }[] {
  return FACT_TABLES.flatMap((table) => {
    const dates = Object.entries(LOAD_TABLES[table].columns).flatMap(([c, t]) => (t === 'date' ? [[c, 'dim_date'] as const] : []));
    return [...dates, ...Object.entries(REFERENCES[table] ?? {})].map(([column, references]) => ({
      table,
      column,
      references,
      name: `${table}_${column}_fkey`,
    }));
  });
}

/**
 * The foreign keys that are missing, added and validated (one set-based scan each): after a
 * bulk load into an empty schema this is far cheaper than a trigger per row.
 */
export function foreignKeysDdl(schema = 'public'): string {
  const s = `"${schema}"`;
  return `DO $$ BEGIN
${foreignKeys()
  .map(
    (fk) => `  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '${fk.name}' AND conrelid = '${s}.${fk.table}'::regclass) THEN
    ALTER TABLE ${s}.${fk.table} ADD CONSTRAINT ${fk.name} FOREIGN KEY (${fk.column}) REFERENCES ${s}.${fk.references};
  END IF;`,
  )
  .join('\n')}
END $$;`;
}

/** The warehouse's DDL, idempotent; without `foreignKeys` they are left for foreignKeysDdl (a bulk load first). */
export function warehouseDdl(schema = 'public', { foreignKeys = true } = {}): string {
  const s = `"${schema}"`;
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
SET LOCAL search_path TO ${s};

CREATE TABLE IF NOT EXISTS dim_date (
  date_id date PRIMARY KEY, year int NOT NULL, month int NOT NULL, day int NOT NULL, day_of_week int NOT NULL,
  day_name varchar NOT NULL, month_name varchar NOT NULL, quarter int NOT NULL);

${(Object.keys(LOAD_TABLES) as LoadTableName[]).map(tableDdl).join('\n')}

-- Current state of each fact: the latest version per natural id, deleted ones left out.
${FACT_TABLES.map((t) => `CREATE OR REPLACE VIEW ${t}_current AS\n  SELECT * FROM (${newestPerKeySql(LOAD_TABLES[t].key, t)}) f WHERE NOT is_deleted;`).join('\n')}

-- Internal state of the loader.
CREATE TABLE IF NOT EXISTS totes_load_log (
  batch_key text PRIMARY KEY, shard text NOT NULL, events int NOT NULL, rows int NOT NULL DEFAULT 0,
  loaded_at timestamptz NOT NULL DEFAULT now());
-- Per shard: everything with a commit LSN up to watermark_lsn has been loaded. frontier_seq is
-- the last record of the loaded prefix of the shard (every record up to it is loaded); a gap is
-- a record no micro-batch holds while later ones exist (gap_since: when that record arrived).
-- ended: closed by a reshard and loaded to its end. A row exists for every shard of the stream.
CREATE TABLE IF NOT EXISTS totes_shard_progress (
  shard text PRIMARY KEY, last_manifest_key text NOT NULL, watermark_lsn pg_lsn NOT NULL DEFAULT '0/0',
  watermark_commit_time timestamptz, updated_at timestamptz NOT NULL DEFAULT now(),
  frontier_seq text, parents text[] NOT NULL DEFAULT '{}', ended boolean NOT NULL DEFAULT false,
  gap_after_seq text, gap_missing_seq text, gap_resumes_seq text, gap_since timestamptz);
-- a warehouse from before frontiers: ALTER only then (it locks the table even when it adds nothing)
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name = 'totes_shard_progress' AND column_name = 'frontier_seq') THEN
    ALTER TABLE totes_shard_progress ADD COLUMN frontier_seq text, ADD COLUMN parents text[] NOT NULL DEFAULT '{}',
      ADD COLUMN ended boolean NOT NULL DEFAULT false, ADD COLUMN gap_after_seq text, ADD COLUMN gap_missing_seq text,
      ADD COLUMN gap_resumes_seq text, ADD COLUMN gap_since timestamptz;
  END IF;
END $$;
-- Truncates and snapshot ranges applied, once each (row-ends.ts).
${ROW_ENDS_DDL}
-- Complete up to the lowest watermark of the shards still in play (a closed parent loaded to its
-- end is not); unknown while any of them has none. Gaps: how many shards have one, and the age
-- of the oldest missing record.
CREATE OR REPLACE VIEW totes_freshness AS
  SELECT min(watermark_lsn) AS watermark_lsn,
         CASE WHEN count(*) = count(watermark_commit_time) THEN min(watermark_commit_time) END AS watermark_commit_time,
         CASE WHEN count(*) = count(watermark_commit_time) THEN extract(epoch FROM now() - min(watermark_commit_time)) END AS lag_seconds,
         count(gap_since)::int AS gap_shards, extract(epoch FROM now() - min(gap_since))::float8 AS gap_seconds
    FROM totes_shard_progress WHERE NOT ended;
-- Every dimension version (history-sql.ts), and the warehouse as of a source commit (as-of-sql.ts).
${historyDdl()}
${asOfDdl(schema)}
${foreignKeys ? foreignKeysDdl(schema) : ''}
`;
}
