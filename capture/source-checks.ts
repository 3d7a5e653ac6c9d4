/**
 * What capture checks on the source before it creates a slot or streams, each failure a
 * SourceNotReady that names the fix: the server's version (13+) and wal_level, the publication
 * (the 11 tables and, where signals travel as rows, the signal table), and the state tables.
 * Also what the stream needs to know from the server: the signal carrier for its version and
 * the column types at start (relation messages are compared with them to see a retyped column).
 */
import { SIGNAL_TABLE_NAME, signalCarrier, type SignalCarrier } from '../formats/source-signals.ts';
import { SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import type pg from '../lib/pg.ts';
import { SourceNotReady } from './source-errors.ts';
import { CAPTURE_STATE_DDL, createPublicationSql } from './source-setup.ts';

/** The oldest server_version_num supported: wal_status and max_slot_wal_keep_size arrived in 13. */
const OLDEST_SUPPORTED = 130_000;

export interface SourceFacts {
  serverVersionNum: number;
  carrier: SignalCarrier;
  columnTypes: Map<SourceTable, Map<string, number>>;
}

export interface SourceCheck {
  publicationName: string;
  /** Publications are checked for pgoutput; wal2json names its tables in a plugin option. */
  needsPublication: boolean;
  /** Create the publication and state tables when missing (local mode); production expects the DBA to. */
  createPrerequisites: boolean;
}

export async function checkSource(db: pg.Pool, check: SourceCheck): Promise<SourceFacts> {
  const { rows } = await db.query(
    `SELECT current_setting('server_version_num')::int AS version_num, current_setting('server_version') AS version, current_setting('wal_level') AS wal_level`,
  );
  const { version_num: serverVersionNum, version, wal_level: walLevel } = rows[0];
  if (serverVersionNum < OLDEST_SUPPORTED)
    throw new SourceNotReady(
      `the source is Postgres ${version}, older than 13`,
      'totes-cdc needs Postgres 13 or later (it relies on wal_status and max_slot_wal_keep_size); upgrade the server (RDS: modify the DB instance to engine version 13 or later)',
    );
  if (walLevel !== 'logical')
    throw new SourceNotReady(
      `the source's wal_level is '${walLevel}', not 'logical'`,
      'set wal_level = logical and restart (RDS: rds.logical_replication = 1 in the DB parameter group, then reboot); see `totes source-setup`',
    );
  const carrier = signalCarrier(serverVersionNum);
  if (check.createPrerequisites) await createPrerequisites(db, check);
  if (check.needsPublication) await checkPublication(db, check.publicationName, carrier);
  const state = await db.query(`SELECT to_regclass('totes_cdc.snapshot_progress') AS progress, to_regclass($1) AS signal`, [SIGNAL_TABLE_NAME]);
  const missing = [
    ...(state.rows[0].progress ? [] : ['totes_cdc.snapshot_progress']),
    ...(carrier === 'table' && !state.rows[0].signal ? [SIGNAL_TABLE_NAME] : []),
  ];
  if (missing.length > 0)
    throw new SourceNotReady(`table ${missing.join(' and ')} is missing`, 'create the totes_cdc schema and its tables as `totes source-setup` shows');
  return { serverVersionNum, carrier, columnTypes: await columnTypes(db) };
}

async function createPrerequisites(db: pg.Pool, check: SourceCheck): Promise<void> {
  await db.query(CAPTURE_STATE_DDL);
  const pub = await db.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [check.publicationName]);
  if (check.needsPublication && pub.rowCount === 0) await db.query(createPublicationSql(check.publicationName));
}

async function checkPublication(db: pg.Pool, name: string, carrier: SignalCarrier): Promise<void> {
  const exists = await db.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [name]);
  if (exists.rowCount === 0) throw new SourceNotReady(`publication "${name}" does not exist`, `create it with: ${createPublicationSql(name)}`);
  const { rows } = await db.query(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1`, [name]);
  const published = new Set(rows.map((r) => r.t));
  const needed = [
    ...SOURCE_TABLE_NAMES.map((t) => ({ name: `public.${t}`, sql: `public."${t}"` })),
    ...(carrier === 'table' ? [{ name: SIGNAL_TABLE_NAME, sql: SIGNAL_TABLE_NAME }] : []),
  ];
  const missing = needed.filter((t) => !published.has(t.name));
  if (missing.length === 0) return;
  const signals = carrier === 'table' && !published.has(SIGNAL_TABLE_NAME);
  throw new SourceNotReady(
    `publication "${name}" lacks ${missing.map((t) => t.name).join(', ')}${signals ? ` (on Postgres 13 heartbeats and snapshot watermarks travel as rows of ${SIGNAL_TABLE_NAME})` : ''}`,
    `run, as the tables' owner: ALTER PUBLICATION "${name}" ADD TABLE ${missing.map((t) => t.sql).join(', ')}`,
  );
}

async function columnTypes(db: pg.Pool): Promise<Map<SourceTable, Map<string, number>>> {
  const { rows } = await db.query(
    `SELECT c.relname AS table_name, a.attname AS column_name, a.atttypid::int AS type_oid
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped`,
    [SOURCE_TABLE_NAMES],
  );
  const types = new Map<SourceTable, Map<string, number>>();
  for (const r of rows) {
    if (!types.has(r.table_name)) types.set(r.table_name, new Map());
    types.get(r.table_name)!.set(r.column_name, r.type_oid);
  }
  return types;
}
