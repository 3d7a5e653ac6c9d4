/**
 * The warehouse as the loader writes it: its schema, the merge of load rows, the load log and
 * the shard watermarks. The loader (loader.ts) feeds it from the processed bucket; replay feeds
 * it from the archive. Both go through this one port, the Warehouse interface; PostgresWarehouse
 * is the warehouse this project has.
 *
 * Exactly-once: the batch's row in totes_load_log is inserted in the same transaction as its
 * merge, so a batch is either wholly loaded and logged or neither; a crash at any point leaves
 * it to be loaded by the next run. Loaders are serialised by an advisory lock, so two loaders
 * (a deployment's new task beside its old one) never interleave merges.
 *
 * The stream loader (loader.ts) moves each shard's frontier and watermark in the transaction
 * that loads the batches (shard-progress.ts); the warehouse is complete up to the lowest
 * watermark across the shards still in play (the view totes_freshness). Replay records the
 * newest heartbeat it replayed under its own shard name (a batch with `manifestKey`).
 */
import type pg from '../lib/pg.ts';
import { inTransaction } from '../lib/pg.ts';
import { log } from '../lib/log.ts';
import { SQLSTATE } from '../lib/sqlstate.ts';
import { LOAD_TABLES, type LoadRow, type LoadTableName, type RowsEnd } from '../formats/load-tables.ts';
import type { Manifest } from '../formats/manifest.ts';
import { foreignKeysDdl, warehouseDdl } from './warehouse-schema.ts';
import { commitsOf, recordCommitsSql } from './as-of-sql.ts';
import { filledInSql, HISTORY_TABLES } from './history-sql.ts';
import { appendIndependentFacts, mergeTables } from './merge.ts';
import { newestNaming } from './merge-sql.ts';
import { utcTimestampText } from './stage.ts';
import { copyRows } from '../lib/pg-copy.ts';
import { compareLsn } from '../formats/change-event.ts';
import { applyRowEnds } from './row-ends.ts';
import type { Gap } from './frontier.ts';
import { advanceShards, checkFrontiers, inheritWatermarks, settleShard, shardStates, type ShardAdvance, type StoredShardState } from './shard-progress.ts';
import type { ShardInfo } from '../stores/shard-stream.ts';

export interface LoadBatchInfo {
  /** Unique name of the batch in the load log. */
  batchKey: string;
  shard: string;
  events: number;
  /** Record `heartbeat` as the watermark of `shard`, named by this key (replay: the newest heartbeat it passed). */
  manifestKey?: string;
  heartbeat?: Manifest['heartbeat'];
  /** Truncates and snapshot ranges, applied after the batch's rows (row-ends.ts). */
  ends?: RowsEnd[];
}

/**
 * A batch to merge. Its tables may still be arriving (the loader reads and decodes them while
 * the load runs), so it says how many rows they hold.
 */
export interface BatchToLoad {
  batch: LoadBatchInfo;
  rows: number;
  tables: Map<LoadTableName, LoadRow[] | Promise<LoadRow[]>>;
}

/** A batch's fact table of at least this many rows is appended as it arrives (trusted references only). */
const EARLY_APPEND_ROWS = 2_000;

/** What a warehouse has loaded since it was made. */
export interface WarehouseMetrics {
  batches: number;
  rows: number;
  /** Truncates applied, and rows ended by them and by snapshot ranges. */
  truncates: number;
  rowsEnded: number;
  lastLoadAt: number | null;
}

export interface Freshness {
  watermarkLsn: string | null;
  watermarkCommitTime: string | null;
  lagSeconds: number | null;
  /** Shards holding a gap (records no micro-batch has), and the age of the oldest missing record. */
  gapShards: number;
  gapSeconds: number | null;
}

/** A shard's state once a pass has planned it: where its frontier stands, whether it is loaded to its end, its gap. */
export interface SettledShard {
  shard: string;
  frontier: string | null;
  ended: boolean;
  gap: Gap | null;
}

/** The port the loader and replay write a warehouse through. */
export interface Warehouse {
  /** Where in the warehouse its tables are. */
  readonly schema: string;
  readonly metrics: WarehouseMetrics;
  /** Create what is missing of the schema; without `foreignKeys`, they wait for addForeignKeys (a bulk load into an empty schema first). */
  ensureSchema(opts?: { foreignKeys?: boolean }): Promise<void>;
  addForeignKeys(): Promise<void>;
  /** Whether loads skip the per-row reference checks (every reference holds by construction). */
  trustsReferences(): Promise<boolean>;
  /** Merge load rows in one transaction, logged under `batch.batchKey` so they load once; whether they loaded now. */
  loadTables(batch: LoadBatchInfo, tables: Map<LoadTableName, LoadRow[]>): Promise<boolean>;
  /**
   * Merge several batches in one transaction, each exactly once, and move shard frontiers over
   * them in it, only from where they were planned (StalePlanError otherwise). Returns batches merged.
   */
  loadBatches(items: BatchToLoad[], advances?: ShardAdvance[]): Promise<number>;
  /** Every shard's state, a row made first for the shards that have none. */
  shardStates(shards: ShardInfo[]): Promise<Map<string, StoredShardState>>;
  /** Record shards' ends and gaps (each only where its frontier still stands), and carry closed parents' watermarks to their children. */
  settleShards(settled: SettledShard[]): Promise<void>;
  freshness(): Promise<Freshness>;
}

export class PostgresWarehouse implements Warehouse {
  readonly metrics: WarehouseMetrics = { batches: 0, rows: 0, truncates: 0, rowsEnded: 0, lastLoadAt: null };
  private trustProbe: Promise<boolean> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    readonly schema = 'public',
  ) {}

  /**
   * Whether the load transaction skips the foreign keys' per-row triggers (about 85 % of a fact
   * append). It may: each merge inserts the dim_date rows and inferred members its facts name
   * before the facts, in the same transaction, and nothing ever deletes a dimension row (an end
   * is a tombstone), so every reference holds by construction; the constraints stay declared
   * and valid, and every other writer is checked. `SET LOCAL session_replication_role = replica`,
   * as Postgres's own logical-replication apply does, needs a role allowed to set it (superuser,
   * rds_superuser, or GRANT SET ON PARAMETER); any other role loads with the triggers, slower.
   * It also skips any trigger of its own someone adds to these tables.
   */
  trustsReferences(): Promise<boolean> {
    this.trustProbe ??= inTransaction(this.pool, (db) => db.query(`SET LOCAL session_replication_role = replica`)).then(
      () => {
        log.info({ schema: this.schema }, 'loading with references trusted: the loader inserts what each fact names first');
        return true;
      },
      (err) => {
        if ((err as { code?: string }).code !== SQLSTATE.insufficient_privilege) {
          this.trustProbe = undefined;
          throw err;
        }
        log.info({ schema: this.schema }, 'loading with per-row foreign-key checks: this role may not set session_replication_role');
        return false;
      },
    );
    return this.trustProbe;
  }

  async ensureSchema({ foreignKeys = true } = {}): Promise<void> {
    await this.ddl(warehouseDdl(this.schema, { foreignKeys }));
  }

  /** Add and validate the foreign keys that are missing, one set-based scan each. */
  async addForeignKeys(): Promise<void> {
    await this.ddl(foreignKeysDdl(this.schema));
  }

  private async ddl(sql: string): Promise<void> {
    await inTransaction(this.pool, async (db) => {
      await db.query(`SELECT pg_advisory_xact_lock(hashtext('totes-ddl'))`);
      await db.query(sql);
    });
  }

  async loadTables(batch: LoadBatchInfo, tables: Map<LoadTableName, LoadRow[]>): Promise<boolean> {
    return (await this.loadBatches([{ batch, rows: rowCount(tables), tables }])) === 1;
  }

  /**
   * Each batch is logged in totes_load_log in the transaction that merges it, and one already
   * logged contributes nothing: each loads exactly once.
   */
  async loadBatches(items: BatchToLoad[], advances: ShardAdvance[] = []): Promise<number> {
    if (items.length === 0 && advances.length === 0) return 0;
    const s = `"${this.schema}"`;
    const merged = await inTransaction(this.pool, async (db) => {
      await this.lockLoads(db);
      const trusted = await this.trustsReferences();
      if (trusted) await db.query(`SET LOCAL session_replication_role = replica`);
      await checkFrontiers(db, this.schema, advances);
      const logged = await db.query(
        `INSERT INTO ${s}.totes_load_log (batch_key, shard, events, rows)
         SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) ON CONFLICT DO NOTHING RETURNING batch_key`,
        [items.map((i) => i.batch.batchKey), items.map((i) => i.batch.shard), items.map((i) => i.batch.events), items.map((i) => i.rows)],
      );
      const fresh = new Set(logged.rows.map((r) => r.batch_key as string));
      const tables = new Map<LoadTableName, LoadRow[]>();
      const factsLeft = new Map<LoadTableName, LoadRow[]>();
      for (const item of items) {
        if (!fresh.has(item.batch.batchKey)) continue;
        for (const [table, arriving] of item.tables) {
          const rows = await arriving;
          appendTo(tables, table, rows);
          if (LOAD_TABLES[table].kind !== 'fact') continue;
          // trusted, a fact version needs nothing of the dimensions until commit: a large table goes in as it arrives, while later
          // ones are still read; small ones wait to go in together (one COPY a table, not one a batch)
          const early = trusted && rows.length >= EARLY_APPEND_ROWS;
          appendTo(factsLeft, table, early ? await appendIndependentFacts(db, this.schema, table, rows) : rows);
        }
      }
      const named = fresh.size > 0 ? await mergeTables(db, this.schema, tables, factsLeft) : null;
      const freshEnds = items.flatMap((i) => (fresh.has(i.batch.batchKey) ? (i.batch.ends ?? []) : []));
      const ended = await applyRowEnds(db, this.schema, freshEnds, tables, () => newestNaming(tables));
      for (const table of HISTORY_TABLES) {
        const keys = named?.held.get(table);
        if (keys?.length) await db.query(filledInSql(table, this.schema), [keys]);
      }
      await recordCommits(db, this.schema, commitsOf(tables, freshEnds));
      await advanceShards(db, this.schema, advances);
      for (const item of items) {
        const b = item.batch;
        if (!b.manifestKey) continue;
        await db.query(
          `INSERT INTO ${s}.totes_shard_progress AS p (shard, last_manifest_key, watermark_lsn, watermark_commit_time, updated_at)
           VALUES ($1, $2, coalesce($3::pg_lsn, '0/0'), $4, now())
           ON CONFLICT (shard) DO UPDATE SET last_manifest_key = greatest(p.last_manifest_key, excluded.last_manifest_key),
             watermark_lsn = greatest(p.watermark_lsn, excluded.watermark_lsn),
             watermark_commit_time = CASE WHEN excluded.watermark_lsn > p.watermark_lsn THEN excluded.watermark_commit_time ELSE p.watermark_commit_time END,
             updated_at = now()`,
          [b.shard, b.manifestKey, b.heartbeat?.lsn ?? null, b.heartbeat?.commitTime ?? null],
        );
      }
      return { batches: fresh.size, rows: rowCount(tables), ended };
    });
    if (merged.batches > 0) {
      this.metrics.batches += merged.batches;
      this.metrics.rows += merged.rows;
      this.metrics.truncates += merged.ended.truncates;
      this.metrics.rowsEnded += merged.ended.rows;
      this.metrics.lastLoadAt = Date.now();
    }
    return merged.batches;
  }

  /** Take the loaders' lock on this schema for the rest of `db`'s transaction: no batch merges meanwhile. */
  private async lockLoads(db: pg.PoolClient): Promise<void> {
    await db.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`totes-loader:${this.schema}`]);
  }

  shardStates(shards: ShardInfo[]): Promise<Map<string, StoredShardState>> {
    return shardStates(this.pool, this.schema, shards);
  }

  async settleShards(settled: SettledShard[]): Promise<void> {
    await this.withLoadsLocked(async (db) => {
      for (const p of settled) await settleShard(db, this.schema, p.shard, p.frontier, p.ended, p.gap);
      await inheritWatermarks(db, this.schema);
    });
  }

  /** In a transaction holding the loaders' lock. */
  withLoadsLocked<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, async (db) => {
      await this.lockLoads(db);
      return fn(db);
    });
  }

  /**
   * Take over another schema's load state (inside `db`'s transaction): its load log, so no batch
   * it loaded loads again here, and its shard progress but `exceptShard`, so loading resumes
   * where it stood (when it had any).
   */
  async adoptLoadState(db: pg.PoolClient, from: string, exceptShard: string): Promise<void> {
    const s = `"${this.schema}"`,
      f = `"${from}"`;
    await db.query(`INSERT INTO ${s}.totes_load_log SELECT * FROM ${f}.totes_load_log ON CONFLICT DO NOTHING`);
    const shards = await db.query(`SELECT 1 FROM ${f}.totes_shard_progress WHERE shard <> $1 LIMIT 1`, [exceptShard]);
    if (!shards.rowCount) return;
    await db.query(`DELETE FROM ${s}.totes_shard_progress`);
    await db.query(`INSERT INTO ${s}.totes_shard_progress SELECT * FROM ${f}.totes_shard_progress WHERE shard <> $1`, [exceptShard]);
  }

  /** The newest source LSN any row of this schema came from ('0/0' when empty). */
  async newestSourceLsn(db: Pick<pg.PoolClient, 'query'> = this.pool): Promise<string> {
    const tables = [...Object.keys(LOAD_TABLES)];
    const { rows } = await db.query(
      `SELECT max(m)::text AS lsn FROM (${tables.map((t) => `SELECT max(source_lsn) AS m FROM "${this.schema}".${t}`).join(' UNION ALL ')}) x`,
    );
    return rows[0].lsn ?? '0/0';
  }

  async freshness(): Promise<Freshness> {
    const { rows } = await this.pool.query(
      `SELECT watermark_lsn::text, to_char(watermark_commit_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS commit_time, lag_seconds::float8,
              gap_shards, gap_seconds
         FROM "${this.schema}".totes_freshness`,
    );
    const r = rows[0] ?? {};
    return {
      watermarkLsn: r.watermark_lsn ?? null,
      watermarkCommitTime: r.commit_time ?? null,
      lagSeconds: r.lag_seconds ?? null,
      gapShards: r.gap_shards ?? 0,
      gapSeconds: r.gap_seconds ?? null,
    };
  }
}

/**
 * Record a load's source transactions in totes_commits, each once. Those the table holds already
 * (a transaction spread over shards, loaded before by another) are found by one scan of the
 * load's LSN range, and the rest COPYed: a conflict check per row (ON CONFLICT) costs more than
 * the COPY. Under a savepoint, so a commit found there after all (an LSN spelt another way) sends
 * them through recordCommitsSql, as does a commit time that is not UTC text.
 */
async function recordCommits(db: pg.PoolClient, schema: string, [lsns, times]: [string[], string[]]): Promise<void> {
  if (lsns.length === 0) return;
  let [first, last] = [lsns[0], lsns[0]];
  for (const l of lsns) {
    if (compareLsn(l, first) < 0) first = l;
    if (compareLsn(l, last) > 0) last = l;
  }
  const { rows: held } = await db.query(`SELECT source_lsn::text AS lsn FROM "${schema}".totes_commits WHERE source_lsn BETWEEN $1 AND $2`, [first, last]);
  const known = new Set(held.map((r) => r.lsn as string));
  const fresh = lsns.flatMap((lsn, i) => (known.has(lsn) ? [] : [{ source_lsn: lsn, source_commit_time: utcTimestampText(times[i]) }]));
  if (fresh.length === 0) return;
  if (fresh.every((c) => c.source_commit_time !== null)) {
    await db.query('SAVEPOINT record_commits');
    try {
      await copyRows(db, `"${schema}".totes_commits`, ['source_lsn', 'source_commit_time'], fresh);
      await db.query('RELEASE SAVEPOINT record_commits');
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== SQLSTATE.unique_violation) throw err;
      await db.query('ROLLBACK TO SAVEPOINT record_commits');
    }
  }
  await db.query(recordCommitsSql(schema), [lsns, times]);
}

function appendTo(tables: Map<LoadTableName, LoadRow[]>, table: LoadTableName, rows: LoadRow[]): void {
  const all = tables.get(table);
  if (all) for (const r of rows) all.push(r);
  else tables.set(table, [...rows]);
}

function rowCount(tables: Map<LoadTableName, LoadRow[]>): number {
  return [...tables.values()].reduce((n, r) => n + r.length, 0);
}
