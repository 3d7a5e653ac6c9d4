/** What a DBA applies to totesys before the capture service can run (`totes source-setup`). */
import { SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import { SNAPSHOT_PROGRESS_DDL } from './chunked-snapshot.ts';

/** The publication: exactly the 11 business tables (never _prisma_migrations). */
export function createPublicationSql(name: string): string {
  return `CREATE PUBLICATION "${name}" FOR TABLE ${SOURCE_TABLE_NAMES.map((t) => `public."${t}"`).join(', ')}`;
}

export function sourceSetupSql(opts: { publication: string; role: string }): string {
  const tables = SOURCE_TABLE_NAMES.map((t) => `public."${t}"`).join(', ');
  return `-- totes-cdc source setup for totesys. Apply as the database owner (on RDS: the master user).
--
-- 1. Logical decoding. Self-managed: wal_level = logical in postgresql.conf, then restart.
--    RDS / Aurora: set rds.logical_replication = 1 in the DB parameter group, then reboot.
--    Cap what a stalled slot may hold back (Postgres 13+), e.g.:
--      max_slot_wal_keep_size = 10GB
--    Check: SHOW wal_level;  -- must say 'logical'

-- 2. A least-privilege role for the capture service (replace the password; keep it in Secrets Manager).
CREATE ROLE ${opts.role} WITH LOGIN PASSWORD 'change-me';
-- Self-managed: ALTER ROLE ${opts.role} WITH REPLICATION;
-- RDS: GRANT rds_replication TO ${opts.role};
GRANT USAGE ON SCHEMA public TO ${opts.role};
GRANT SELECT ON ${tables} TO ${opts.role};   -- the initial snapshot reads these

-- 3. The publication: exactly the 11 business tables (never _prisma_migrations).
${createPublicationSql(opts.publication)};

-- 4. Replica identity: the default (primary key) is what totes-cdc expects; nothing to do.
--    Check: SELECT relname, relreplident FROM pg_class WHERE relname IN (${SOURCE_TABLE_NAMES.map((t) => `'${t}'`).join(', ')});  -- 'd'

-- 5. The capture service's own state: snapshot progress per table, so a snapshot resumes.
CREATE SCHEMA totes_cdc AUTHORIZATION ${opts.role};
${SNAPSHOT_PROGRESS_DDL.replace('IF NOT EXISTS ', '')};
ALTER TABLE totes_cdc.snapshot_progress OWNER TO ${opts.role};
`;
}
