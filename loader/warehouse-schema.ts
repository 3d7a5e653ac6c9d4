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
import { FACT_TABLES, LOAD_TABLES, REFERENCES, type LoadTableName } from '../formats/load-tables.ts';
import { newestPerKeySql } from './merge-sql.ts';
import { ROW_ENDS_DDL } from './row-ends.ts';

export const STAR_TABLES = [
  'dim_date',
  'dim_staff',
  'dim_location',
  'dim_counterparty',
  'dim_currency',
  'dim_design',
  'dim_payment_type',
  'dim_transaction',
  'fact_sales_order',
  'fact_purchase_order',
  'fact_payment',
] as const;
export type StarTable = (typeof STAR_TABLES)[number];

const PROVENANCE = `source_lsn pg_lsn NOT NULL DEFAULT '0/0', source_pos integer NOT NULL DEFAULT 0, is_deleted boolean NOT NULL DEFAULT false`;
const FACT_PROVENANCE = `source_op char(1) NOT NULL, source_lsn pg_lsn NOT NULL, source_pos integer NOT NULL, source_commit_time timestamp(6) NOT NULL, is_deleted boolean NOT NULL DEFAULT false`;

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

CREATE TABLE IF NOT EXISTS dim_staff (
  staff_id int PRIMARY KEY, first_name varchar, last_name varchar, department_name varchar, location varchar, email_address varchar,
  department_id int, ${PROVENANCE});
CREATE INDEX IF NOT EXISTS dim_staff_department ON dim_staff (department_id);

CREATE TABLE IF NOT EXISTS dim_location (
  location_id int PRIMARY KEY, address_line_1 varchar, address_line_2 varchar, district varchar, city varchar, postal_code varchar,
  country varchar, phone varchar, ${PROVENANCE});

CREATE TABLE IF NOT EXISTS dim_counterparty (
  counterparty_id int PRIMARY KEY, counterparty_legal_name varchar, counterparty_legal_address_line_1 varchar,
  counterparty_legal_address_line_2 varchar, counterparty_legal_district varchar, counterparty_legal_city varchar,
  counterparty_legal_postal_code varchar, counterparty_legal_country varchar, counterparty_legal_phone_number varchar,
  legal_address_id int, ${PROVENANCE});
CREATE INDEX IF NOT EXISTS dim_counterparty_address ON dim_counterparty (legal_address_id);

CREATE TABLE IF NOT EXISTS dim_currency (currency_id int PRIMARY KEY, currency_code varchar, currency_name varchar, ${PROVENANCE});
CREATE TABLE IF NOT EXISTS dim_design (design_id int PRIMARY KEY, design_name varchar, file_location varchar, file_name varchar, ${PROVENANCE});
CREATE TABLE IF NOT EXISTS dim_payment_type (payment_type_id int PRIMARY KEY, payment_type_name varchar, ${PROVENANCE});
CREATE TABLE IF NOT EXISTS dim_transaction (transaction_id int PRIMARY KEY, transaction_type varchar, sales_order_id int, purchase_order_id int, ${PROVENANCE});

CREATE TABLE IF NOT EXISTS fact_sales_order (
  sales_record_id serial PRIMARY KEY, sales_order_id int NOT NULL,
  created_date date, created_time time(3), last_updated_date date, last_updated_time time(3),
  sales_staff_id int, counterparty_id int, units_sold int, unit_price numeric(10,2),
  currency_id int, design_id int, agreed_payment_date date,
  agreed_delivery_date date, agreed_delivery_location_id int,
  ${FACT_PROVENANCE}, UNIQUE (sales_order_id, source_lsn, source_pos));

CREATE TABLE IF NOT EXISTS fact_purchase_order (
  purchase_record_id serial PRIMARY KEY, purchase_order_id int NOT NULL,
  created_date date, created_time time(3), last_updated_date date, last_updated_time time(3),
  staff_id int, counterparty_id int, item_code varchar, item_quantity int,
  item_unit_price numeric(10,2), currency_id int, agreed_delivery_date date,
  agreed_payment_date date, agreed_delivery_location_id int,
  ${FACT_PROVENANCE}, UNIQUE (purchase_order_id, source_lsn, source_pos));

CREATE TABLE IF NOT EXISTS fact_payment (
  payment_record_id serial PRIMARY KEY, payment_id int NOT NULL,
  created_date date, created_time time(3), last_updated_date date, last_updated_time time(3),
  transaction_id int, counterparty_id int, payment_amount numeric(10,2),
  currency_id int, payment_type_id int, paid boolean,
  payment_date date,
  ${FACT_PROVENANCE}, UNIQUE (payment_id, source_lsn, source_pos));

-- Current state of each fact: the latest version per natural id, deleted ones left out.
${FACT_TABLES.map((t) => `CREATE OR REPLACE VIEW ${t}_current AS\n  SELECT * FROM (${newestPerKeySql(LOAD_TABLES[t].key, t)}) f WHERE NOT is_deleted;`).join('\n')}

-- Internal state of the loader.
CREATE TABLE IF NOT EXISTS totes_department (
  department_id int PRIMARY KEY, department_name varchar, location varchar, ${PROVENANCE});
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
${foreignKeys ? foreignKeysDdl(schema) : ''}
`;
}
