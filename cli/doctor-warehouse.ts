/**
 * `totes doctor` on the warehouse, connected as the loader connects: its schema (or the right
 * to create it, before the loader's first run) and how fresh it is.
 */
import { STAR_TABLES } from '../loader/warehouse-schema.ts';
import type pg from '../lib/pg.ts';
import { type Check, fail, ok, skip } from './doctor-checks.ts';

/** The loader's own state beside the star schema (loader/warehouse-schema.ts). */
const LOADER_TABLES = ['totes_load_log', 'totes_shard_progress', 'totes_department'];

export interface WarehouseFacts {
  role: string;
  schema: string;
  /** Tables and views of the schema the loader writes or reads, with whether the role may write each. */
  tables: { name: string; canWrite: boolean }[];
  freshnessView: boolean;
  /** Whether the role may create the schema's objects: CREATE on the schema, or on the database when the schema is missing. */
  canCreate: boolean;
  lagSeconds: number | null;
}

export async function readWarehouseFacts(db: pg.Client, schema: string): Promise<WarehouseFacts> {
  const names = [...STAR_TABLES, ...LOADER_TABLES];
  const base = (
    await db.query(
      `SELECT current_user AS role,
         CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) THEN has_schema_privilege($1, 'CREATE')
              ELSE has_database_privilege(current_database(), 'CREATE') END AS can_create,
         to_regclass(format('%I.totes_freshness', $1::text)) IS NOT NULL AS freshness_view`,
      [schema],
    )
  ).rows[0];
  const tables = await db.query(
    `SELECT c.relname, has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'UPDATE') AS can_write
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p')`,
    [schema, names],
  );
  const lag = base.freshness_view ? (await db.query(`SELECT lag_seconds::float8 FROM "${schema}".totes_freshness`)).rows[0]?.lag_seconds : null;
  return {
    role: base.role,
    schema,
    tables: tables.rows.map((r) => ({ name: r.relname, canWrite: r.can_write })),
    freshnessView: base.freshness_view,
    canCreate: base.can_create,
    lagSeconds: lag ?? null,
  };
}

export function judgeWarehouse(f: WarehouseFacts, o: { maxFreshnessSeconds: number }): Check[] {
  const expected = [...STAR_TABLES, ...LOADER_TABLES];
  const found = new Set(f.tables.map((t) => t.name));
  if (found.size === 0 && !f.freshnessView) {
    return [
      f.canCreate
        ? ok('warehouse', `schema ${f.schema} is empty: the loader creates it on its first run (role ${f.role} may)`)
        : fail(
            'warehouse',
            `schema ${f.schema} is empty and role ${f.role} may not create it`,
            `GRANT CREATE ON SCHEMA ${f.schema} TO ${f.role}; (or CREATE ON DATABASE, if the schema does not exist)`,
          ),
      skip('warehouse', 'freshness: nothing loaded yet'),
    ];
  }
  const checks: Check[] = [];
  const missing = expected.filter((t) => !found.has(t));
  checks.push(
    missing.length === 0 && f.freshnessView
      ? ok('warehouse', `schema ${f.schema}: the 11 star tables, the loader's state and totes_freshness`)
      : fail(
          'warehouse',
          `schema ${f.schema} lacks ${[...missing, ...(f.freshnessView ? [] : ['totes_freshness'])].join(', ')}`,
          f.canCreate
            ? 'the loader creates what is missing at its next cold start; if this persists, check its logs'
            : `GRANT CREATE ON SCHEMA ${f.schema} TO ${f.role};`,
        ),
  );
  const readOnly = f.tables.filter((t) => !t.canWrite).map((t) => t.name);
  checks.push(
    readOnly.length === 0
      ? ok('warehouse', `role ${f.role} may write every table`)
      : fail(
          'warehouse',
          `role ${f.role} may not write ${readOnly.join(', ')}`,
          `GRANT INSERT, UPDATE ON ${readOnly.map((t) => `${f.schema}.${t}`).join(', ')} TO ${f.role};`,
        ),
  );
  const lag = f.lagSeconds;
  checks.push(
    lag === null
      ? fail(
          'warehouse',
          'freshness unknown: no heartbeat has been loaded',
          'is capture running, and the loader schedule enabled (capture.running, loader.running)? see the stream and loader alarms',
        )
      : lag <= o.maxFreshnessSeconds
        ? ok('warehouse', `fresh: reflects every source commit up to ${Math.round(lag)} s ago`)
        : fail(
            'warehouse',
            `stale: reflects source commits only up to ${Math.round(lag)} s ago (limit ${o.maxFreshnessSeconds} s)`,
            'follow the alarms on the dashboard upstream: loader, processor, stream, capture',
          ),
  );
  return checks;
}
