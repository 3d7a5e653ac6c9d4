/**
 * `totes doctor` on the source, connected as the capture service connects (its role, TLS
 * verified with TOTES_DB_CA_FILE when set): what Postgres says (readSourceFacts) and what that
 * means for capture (judgeSource, pure).
 */
import { createPublicationSql } from '../capture/source-setup.ts';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import type pg from '../lib/pg.ts';
import { type Check, fail, ok } from './doctor-checks.ts';

/** The schema capture's own state lives in; tables of it in the publication (signal tables) are expected. */
const CAPTURE_SCHEMA = 'totes_cdc';
/** The slot-lag-bytes alarm's default (infra/config.ts): the source must keep more WAL than that for the alarm to fire first. */
const SLOT_LAG_ALARM_MB = 1024;

export interface SourceFacts {
  versionNum: number;
  version: string;
  walLevel: string;
  maxSlots: number;
  maxSenders: number;
  /** max_slot_wal_keep_size in MB; -1 unlimited; null before Postgres 13. */
  keepSizeMb: number | null;
  role: string;
  database: string;
  /** Superuser or REPLICATION attribute, or member of rds_replication. */
  canReplicate: boolean;
  onRds: boolean;
  slots: { name: string; plugin: string; database: string | null; active: boolean; walStatus: string | null }[];
  activeSenders: number;
  publication: { allTables: boolean; insert: boolean; update: boolean; delete: boolean } | null;
  publishedTables: { schema: string; table: string }[];
  tables: { name: string; replicaIdentity: string; hasPrimaryKey: boolean; canSelect: boolean }[];
  /** Privileges on totes_cdc.snapshot_progress, null when it does not exist. */
  progressTable: { select: boolean; insert: boolean; update: boolean } | null;
}

export async function readSourceFacts(db: pg.Client, publication: string): Promise<SourceFacts> {
  const s = (
    await db.query(`SELECT current_setting('server_version_num')::int AS version_num, current_setting('server_version') AS version,
      current_setting('wal_level') AS wal_level, current_setting('max_replication_slots')::int AS max_slots,
      current_setting('max_wal_senders')::int AS max_senders,
      (SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size') AS keep_size_mb,
      current_user AS role, current_database() AS database,
      (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user)
        OR coalesce((SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = 'rds_replication'), false) AS can_replicate,
      EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication') AS on_rds,
      (SELECT count(*)::int FROM pg_stat_replication) AS active_senders`)
  ).rows[0];
  const slots = await db.query(`SELECT slot_name, plugin, database, active, to_jsonb(s) ->> 'wal_status' AS wal_status FROM pg_replication_slots s`);
  const pub = await db.query('SELECT puballtables, pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = $1', [publication]);
  const published = await db.query('SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1', [publication]);
  const tables = await db.query(
    `SELECT c.relname, c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
            has_table_privilege(c.oid, 'SELECT') AS can_select
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relname = ANY($1) AND c.relkind IN ('r', 'p')`,
    [SOURCE_TABLE_NAMES],
  );
  const progress = (
    await db.query(`SELECT to_regclass('${CAPTURE_SCHEMA}.snapshot_progress') AS t,
      CASE WHEN to_regclass('${CAPTURE_SCHEMA}.snapshot_progress') IS NOT NULL THEN
        jsonb_build_object('select', has_table_privilege('${CAPTURE_SCHEMA}.snapshot_progress', 'SELECT'),
                           'insert', has_table_privilege('${CAPTURE_SCHEMA}.snapshot_progress', 'INSERT'),
                           'update', has_table_privilege('${CAPTURE_SCHEMA}.snapshot_progress', 'UPDATE')) END AS privileges`)
  ).rows[0];
  return {
    versionNum: s.version_num,
    version: s.version,
    walLevel: s.wal_level,
    maxSlots: s.max_slots,
    maxSenders: s.max_senders,
    keepSizeMb: s.keep_size_mb === null ? null : Number(s.keep_size_mb),
    role: s.role,
    database: s.database,
    canReplicate: s.can_replicate,
    onRds: s.on_rds,
    slots: slots.rows.map((r) => ({ name: r.slot_name, plugin: r.plugin, database: r.database, active: r.active, walStatus: r.wal_status })),
    activeSenders: s.active_senders,
    publication: pub.rows[0]
      ? { allTables: pub.rows[0].puballtables, insert: pub.rows[0].pubinsert, update: pub.rows[0].pubupdate, delete: pub.rows[0].pubdelete }
      : null,
    publishedTables: published.rows.map((r) => ({ schema: r.schemaname, table: r.tablename })),
    tables: tables.rows.map((r) => ({ name: r.relname, replicaIdentity: r.relreplident, hasPrimaryKey: r.has_pk, canSelect: r.can_select })),
    progressTable: progress.t ? progress.privileges : null,
  };
}

/** Every check of the source, from its facts. */
export function judgeSource(f: SourceFacts, o: { slot: string; publication: string }): Check[] {
  const checks: Check[] = [];
  const check = (holds: boolean, what: string, fix: string, advisory?: boolean) =>
    checks.push(holds ? ok('source', what) : fail('source', what, fix, advisory));
  check(f.versionNum >= 130000, `Postgres ${f.version}`, 'capture needs Postgres 13 or newer (wal_status, max_slot_wal_keep_size): upgrade the source');
  check(
    f.walLevel === 'logical',
    `wal_level is ${f.walLevel}`,
    f.onRds
      ? 'set rds.logical_replication = 1 in the DB parameter group and reboot the instance'
      : 'set wal_level = logical in postgresql.conf and restart Postgres',
  );
  check(
    f.canReplicate,
    `role ${f.role} ${f.canReplicate ? 'may' : 'may not'} stream replication`,
    f.onRds ? `GRANT rds_replication TO ${f.role};` : `ALTER ROLE ${f.role} WITH REPLICATION;`,
  );

  const keep = f.keepSizeMb;
  check(
    keep !== null && keep > SLOT_LAG_ALARM_MB,
    keep === null
      ? 'max_slot_wal_keep_size is not available'
      : keep === -1
        ? 'max_slot_wal_keep_size is unlimited (-1)'
        : `max_slot_wal_keep_size is ${keep} MB`,
    keep === -1 || keep === null
      ? 'cap the WAL a stalled slot may hold, or it fills the source disk: max_slot_wal_keep_size = 10GB (RDS: the DB parameter group)'
      : `raise max_slot_wal_keep_size above the slot-lag-bytes alarm (${SLOT_LAG_ALARM_MB} MB), e.g. 10GB, so the alarm fires before the slot is lost`,
    true,
  );

  const slot = f.slots.find((s) => s.name === o.slot);
  if (slot) {
    check(
      slot.database === f.database && ['pgoutput', 'wal2json'].includes(slot.plugin),
      `slot ${o.slot} is a ${slot.plugin} slot on ${slot.database}`,
      `slot ${o.slot} belongs to something else: drop it (SELECT pg_drop_replication_slot('${o.slot}')) or set TOTES_SLOT_NAME to another name`,
    );
    check(
      slot.walStatus !== 'lost',
      `slot ${o.slot}: wal_status ${slot.walStatus ?? 'unknown'}, ${slot.active ? 'active' : 'not active'}`,
      'its WAL is gone: capture drops it, creates it again and snapshots every table again at its next start; run `totes verify` after',
    );
  } else {
    check(
      f.slots.length < f.maxSlots,
      `slot ${o.slot} does not exist yet (capture creates it); ${f.slots.length} of max_replication_slots ${f.maxSlots} in use`,
      `no replication slot is free: raise max_replication_slots (restart) or drop an unused slot`,
    );
  }
  const sendersNeeded = f.activeSenders + (slot?.active ? 0 : 1);
  check(
    sendersNeeded <= f.maxSenders,
    `${f.activeSenders} of max_wal_senders ${f.maxSenders} in use`,
    'no WAL sender is free for capture: raise max_wal_senders (restart)',
  );

  if (!f.publication) {
    checks.push(fail('source', `publication ${o.publication} does not exist`, `${createPublicationSql(o.publication)}; (as in \`totes source-setup\`)`));
  } else {
    const pub = f.publication;
    check(
      pub.insert && pub.update && pub.delete,
      `publication ${o.publication} publishes ${[pub.insert && 'insert', pub.update && 'update', pub.delete && 'delete'].filter(Boolean).join(', ') || 'nothing'}`,
      `ALTER PUBLICATION ${o.publication} SET (publish = 'insert, update, delete, truncate');`,
    );
    const inPublic = new Set(f.publishedTables.filter((t) => t.schema === 'public').map((t) => t.table));
    const missing = SOURCE_TABLE_NAMES.filter((t) => !inPublic.has(t));
    const extra = f.publishedTables.filter((t) => t.schema !== CAPTURE_SCHEMA && !(t.schema === 'public' && SOURCE_TABLE_NAMES.includes(t.table as never)));
    check(
      missing.length === 0,
      missing.length
        ? `publication ${o.publication} lacks ${missing.join(', ')}`
        : `publication ${o.publication} has the ${SOURCE_TABLE_NAMES.length} totesys tables`,
      `ALTER PUBLICATION ${o.publication} ADD TABLE ${missing.map((t) => `public."${t}"`).join(', ')};`,
    );
    check(
      extra.length === 0 && !pub.allTables,
      pub.allTables
        ? `publication ${o.publication} is FOR ALL TABLES`
        : extra.length
          ? `publication ${o.publication} also has ${extra.map((t) => `${t.schema}.${t.table}`).join(', ')}`
          : `publication ${o.publication} has no other tables`,
      pub.allTables
        ? `publish exactly the totesys tables: DROP PUBLICATION ${o.publication}; ${createPublicationSql(o.publication)};`
        : `ALTER PUBLICATION ${o.publication} DROP TABLE ${extra.map((t) => `${t.schema}."${t.table}"`).join(', ')};`,
    );
  }

  const found = new Map(f.tables.map((t) => [t.name, t]));
  const absent = SOURCE_TABLE_NAMES.filter((t) => !found.has(t));
  check(
    absent.length === 0,
    absent.length ? `tables missing: ${absent.join(', ')}` : 'the 11 totesys tables exist',
    'this is not the totesys database, or its schema differs',
  );
  const badIdentity = f.tables.filter((t) => !((t.replicaIdentity === 'd' && t.hasPrimaryKey) || t.replicaIdentity === 'f'));
  check(
    badIdentity.length === 0,
    badIdentity.length
      ? `replica identity without the primary key: ${badIdentity.map((t) => `${t.name} (${t.replicaIdentity})`).join(', ')}`
      : 'every table has replica identity by its primary key',
    badIdentity.map((t) => `ALTER TABLE public."${t.name}" REPLICA IDENTITY DEFAULT;`).join(' '),
  );
  const unreadable = f.tables.filter((t) => !t.canSelect);
  check(
    unreadable.length === 0,
    unreadable.length ? `role ${f.role} may not read ${unreadable.map((t) => t.name).join(', ')}` : `role ${f.role} may read every table (snapshots)`,
    `GRANT SELECT ON ${unreadable.map((t) => `public."${t.name}"`).join(', ')} TO ${f.role};`,
  );
  const p = f.progressTable;
  check(
    Boolean(p?.select && p.insert && p.update),
    p
      ? `${CAPTURE_SCHEMA}.snapshot_progress: ${p.select && p.insert && p.update ? 'readable and writable' : 'not writable'} by ${f.role}`
      : `${CAPTURE_SCHEMA}.snapshot_progress does not exist`,
    p
      ? `GRANT SELECT, INSERT, UPDATE ON ${CAPTURE_SCHEMA}.snapshot_progress TO ${f.role};`
      : 'create the schema and table as `totes source-setup` prints (step 5)',
  );
  return checks;
}
