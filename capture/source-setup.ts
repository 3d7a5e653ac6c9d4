/** What a DBA applies to totesys before the capture service can run (`totes source-setup`). */
import { SIGNAL_TABLE_DDL, SIGNAL_TABLE_NAME } from '../formats/source-signals.ts';
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import { SNAPSHOT_PROGRESS_DDL } from './chunked-snapshot.ts';

/** The capture service's own schema: snapshot progress, and the signal table (Postgres 13's carrier of heartbeats and watermarks). */
export const CAPTURE_STATE_DDL = [`CREATE SCHEMA IF NOT EXISTS totes_cdc`, SNAPSHOT_PROGRESS_DDL, SIGNAL_TABLE_DDL].join(';\n');

/** The publication: exactly the 11 business tables (never _prisma_migrations) and the signal table. */
export function createPublicationSql(name: string): string {
  return `CREATE PUBLICATION "${name}" FOR TABLE ${SOURCE_TABLE_NAMES.map((t) => `public."${t}"`).join(', ')}, ${SIGNAL_TABLE_NAME}`;
}

export function sourceSetupSql(opts: { publication: string; role: string }): string {
  const tables = SOURCE_TABLE_NAMES.map((t) => `public."${t}"`).join(', ');
  const role = opts.role;
  return `-- totes-cdc source setup for totesys: the same script for Postgres 13, 14, 15, 16, 17 and 18.
-- Apply it as the owner of the totesys tables (on RDS: the master user, or the role the
-- migrations run as). No superuser is needed: a publication may hold the tables its creator owns.
--
-- 1. Logical decoding; a restart applies these. RDS / Aurora, in the DB parameter group:
--      rds.logical_replication = 1      (sets wal_level = logical)
--      max_replication_slots             one slot free for totes-cdc
--      max_wal_senders                   one WAL sender free for totes-cdc
--      max_slot_wal_keep_size = 10240    (MB) so a stalled slot cannot fill the disk
--    then reboot. Self-managed: the same in postgresql.conf, with wal_level = logical.
--    Check: SHOW wal_level;  -- 'logical'

-- 2. A least-privilege role for the capture service (replace the password; keep it in Secrets Manager).
CREATE ROLE ${role} WITH LOGIN PASSWORD 'change-me';
-- RDS: GRANT rds_replication TO ${role};
-- Self-managed: ALTER ROLE ${role} WITH REPLICATION;
GRANT USAGE ON SCHEMA public TO ${role};
GRANT SELECT ON ${tables} TO ${role};   -- snapshots read these

-- 3. The capture service's own tables, owned by you (so the publication may hold the signal table):
--    snapshot_progress  per-table snapshot progress, so a snapshot resumes after a restart;
--    signal             on Postgres 13, whose pgoutput does not decode logical messages, heartbeats
--                       and snapshot watermarks travel as rows of this table: one row per writer,
--                       overwritten, so it does not grow. On 14+ they travel as logical messages and
--                       the table stays empty; it stays in the publication so an upgrade from 13
--                       needs nothing. The capture service picks the carrier from the server version.
${CAPTURE_STATE_DDL.replaceAll('IF NOT EXISTS ', '')};
GRANT USAGE ON SCHEMA totes_cdc TO ${role};
GRANT SELECT, INSERT, UPDATE ON totes_cdc.snapshot_progress, ${SIGNAL_TABLE_NAME} TO ${role};
-- \`totes verify\` writes its heartbeat the same way: run it as ${role}, or grant its role the same.

-- 4. The publication: exactly the 11 business tables (never _prisma_migrations) and the signal table.
${createPublicationSql(opts.publication)};

-- 5. Replica identity: the default (primary key) is what totes-cdc expects; nothing to do.
--    Check: SELECT relname, relreplident FROM pg_class WHERE relname IN (${SOURCE_TABLE_NAMES.map((t) => `'${t}'`).join(', ')}, 'signal');  -- 'd'
`;
}
