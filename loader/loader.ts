/**
 * The loader: merges micro-batches into the warehouse, one transaction per batch.
 *
 * Exactly-once: the batch's row in totes_load_log is inserted in the same transaction as its
 * merge, so a batch is either wholly loaded and logged or neither; a crash at any point leaves
 * it to be loaded by the next run. Loaders are serialised by an advisory lock, so a Lambda and
 * a local loop (or two Lambdas) never interleave merges.
 *
 * Batches of one shard are loaded in stream order; each shard's newest heartbeat becomes its
 * watermark, and the warehouse is complete up to the lowest watermark across shards.
 */
import { log } from '../lib/log.ts';
import { backoffMs, sleep } from '../lib/retry.ts';
import pg, { inTransaction } from '../lib/pg.ts';
import { LOAD_TABLES, type LoadRow, type LoadTableName } from '../processors/load-tables.ts';
import { decodeParquet } from '../processors/parquet.ts';
import type { Manifest, MicroBatchStore } from '../processors/microbatch-store.ts';
import { warehouseDdl } from '../warehouse/schema.ts';
import { appendFactSql, datesSql, inferredMembersSql, mergeDimensionSql, propagationSql, stageColumns, stageSql } from './merge-sql.ts';

/** Dimensions before the facts that reference them; department and address before the dims derived from them. */
const MERGE_ORDER: LoadTableName[] = [
  'dim_location', 'totes_department', 'dim_staff', 'dim_counterparty', 'dim_currency', 'dim_design', 'dim_payment_type',
  'dim_transaction', 'fact_sales_order', 'fact_purchase_order', 'fact_payment',
];

export interface LoadBatchInfo {
  /** Unique name of the batch in the load log. */
  batchKey: string;
  shard: string;
  events: number;
  /** The manifest the batch came from, when it came from the processed bucket. */
  manifestKey?: string;
  heartbeat?: Manifest['heartbeat'];
}

export interface LoaderMetrics { batches: number; rows: number; lastLoadAt: number | null }

export interface Freshness { watermarkLsn: string | null; watermarkCommitTime: string | null; lagSeconds: number | null }

export class Loader {
  readonly metrics: LoaderMetrics = { batches: 0, rows: 0, lastLoadAt: null };

  constructor(private readonly pool: pg.Pool, private readonly store: MicroBatchStore, readonly schema = 'public') {}

  async ensureSchema(): Promise<void> {
    await inTransaction(this.pool, async (db) => {
      await db.query(`SELECT pg_advisory_xact_lock(hashtext('totes-ddl'))`);
      await db.query(warehouseDdl(this.schema));
    });
  }

  /**
   * Load every batch not yet loaded: shard by shard in stream order, many batches to one
   * transaction (up to `maxRowsPerTransaction` rows), since a merge costs about the same for
   * 300 rows as for 30,000. Returns the number of batches loaded.
   */
  async loadAvailable(maxRowsPerTransaction = 100_000): Promise<number> {
    const pending: { manifest: Manifest; key: string }[] = [];
    const shards = await this.store.listShards();
    const progress = await this.pool.query(`SELECT shard, last_manifest_key FROM "${this.schema}".totes_shard_progress WHERE shard = ANY($1)`, [shards]);
    const after = new Map(progress.rows.map((r) => [r.shard as string, r.last_manifest_key as string]));
    for (const shard of shards) {
      const keys = await this.store.listManifests(shard, after.get(shard));
      const manifests = await mapLimited(keys, 8, (key) => this.store.getManifest(key));
      manifests.forEach((manifest, i) => pending.push({ manifest, key: keys[i] }));
    }
    let loaded = 0;
    for (let start = 0; start < pending.length;) {
      let rows = manifestRows(pending[start].manifest);
      let end = start + 1;
      while (end < pending.length && rows + manifestRows(pending[end].manifest) <= maxRowsPerTransaction) rows += manifestRows(pending[end++].manifest);
      // read before the transaction: S3 latency should not hold the warehouse lock
      const items = await mapLimited(pending.slice(start, end), 8, ({ manifest, key }) => this.readBatch(manifest, key));
      loaded += await this.loadBatches(items);
      start = end;
    }
    return loaded;
  }

  /** Merge one micro-batch from the processed bucket; false if it had been loaded before. */
  async loadBatch(manifest: Manifest, manifestKey: string): Promise<boolean> {
    return (await this.loadBatches([await this.readBatch(manifest, manifestKey)])) === 1;
  }

  /** A micro-batch's load rows, read from the processed bucket. */
  private async readBatch(manifest: Manifest, manifestKey: string): Promise<{ batch: LoadBatchInfo; tables: Map<LoadTableName, LoadRow[]> }> {
    const tables = await mapLimited(manifest.tables, 4, async (t) => [t.table, await decodeParquet(t.table, await this.store.getBytes(t.key))] as const);
    return {
      batch: { batchKey: manifest.batchId, shard: manifest.shard, events: manifest.events, manifestKey, heartbeat: manifest.heartbeat },
      tables: new Map(tables),
    };
  }

  /** Merge load rows in one transaction, logged under `batch.batchKey` so they load once. */
  async loadTables(batch: LoadBatchInfo, tables: Map<LoadTableName, LoadRow[]>): Promise<boolean> {
    return (await this.loadBatches([{ batch, tables }])) === 1;
  }

  /**
   * Merge several batches in one transaction. Each is logged in totes_load_log in that same
   * transaction, and one already logged contributes nothing: each loads exactly once. Batches
   * with a manifest key move their shard's progress and watermark. Returns batches merged.
   */
  async loadBatches(items: { batch: LoadBatchInfo; tables: Map<LoadTableName, LoadRow[]> }[]): Promise<number> {
    if (items.length === 0) return 0;
    const s = `"${this.schema}"`;
    const rowsOf = (t: Map<LoadTableName, LoadRow[]>) => [...t.values()].reduce((n, r) => n + r.length, 0);
    const merged = await inTransaction(this.pool, async (db) => {
      await db.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`totes-loader:${this.schema}`]);
      const logged = await db.query(
        `INSERT INTO ${s}.totes_load_log (batch_key, shard, events, rows)
         SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) ON CONFLICT DO NOTHING RETURNING batch_key`,
        [items.map((i) => i.batch.batchKey), items.map((i) => i.batch.shard), items.map((i) => i.batch.events), items.map((i) => rowsOf(i.tables))]);
      const fresh = new Set(logged.rows.map((r) => r.batch_key as string));
      const tables = new Map<LoadTableName, LoadRow[]>();
      for (const item of items) {
        if (!fresh.has(item.batch.batchKey)) continue;
        for (const [table, rows] of item.tables) {
          const all = tables.get(table);
          if (all) for (const r of rows) all.push(r);
          else tables.set(table, [...rows]);
        }
      }
      if (fresh.size > 0) await this.merge(db, tables);
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
          [b.shard, b.manifestKey, b.heartbeat?.lsn ?? null, b.heartbeat?.commitTime ?? null]);
      }
      return { batches: fresh.size, rows: rowsOf(tables) };
    });
    if (merged.batches > 0) {
      this.metrics.batches += merged.batches;
      this.metrics.rows += merged.rows;
      this.metrics.lastLoadAt = Date.now();
    }
    return merged.batches;
  }

  private async merge(db: pg.PoolClient, tables: Map<LoadTableName, LoadRow[]>): Promise<void> {
    const touched = { staff: [] as number[], departments: [] as number[], counterparties: [] as number[], addresses: [] as number[] };
    for (const table of MERGE_ORDER) {
      const rows = tables.get(table);
      if (!rows?.length) continue;
      const stage = stageSql(table);
      await db.query(stage.create);
      await db.query(stage.insert, stageColumns(table).map(([name]) => rows.map((r) => r[name] ?? null)));
      const dates = datesSql(table, this.schema);
      if (dates) await db.query(dates);
      for (const sql of inferredMembersSql(table, this.schema)) await db.query(sql);
      if (LOAD_TABLES[table].kind === 'dim') {
        if (rows.some((r) => r.unchanged !== null)) {
          const [update, insert] = mergeDimensionSql(table, this.schema, true);
          for (let wave = 1; wave <= maxCount(rows, LOAD_TABLES[table].key); wave++) {
            await db.query(update, [wave]);
            await db.query(insert, [wave]);
          }
        } else {
          for (const sql of mergeDimensionSql(table, this.schema, false)) await db.query(sql);
        }
      } else {
        const append = appendFactSql(table, this.schema);
        await db.query(append.independent);
        // the rest (deletes, snapshot reads, unchanged TOAST) read the version before them: in waves
        const waves = maxCount(rows.filter(needsPreviousVersion), LOAD_TABLES[table].key);
        for (let wave = 1; wave <= waves; wave++) await db.query(append.dependent, [wave]);
      }
      const keys = rows.map((r) => r[LOAD_TABLES[table].key] as number);
      if (table === 'dim_staff') touched.staff.push(...keys);
      if (table === 'totes_department') touched.departments.push(...keys);
      if (table === 'dim_counterparty') touched.counterparties.push(...keys);
      if (table === 'dim_location') touched.addresses.push(...keys);
    }
    const propagate = propagationSql(this.schema);
    if (touched.staff.length || touched.departments.length) await db.query(propagate.staff, [touched.staff, touched.departments]);
    if (touched.counterparties.length || touched.addresses.length) await db.query(propagate.counterparty, [touched.counterparties, touched.addresses]);
  }

  async freshness(): Promise<Freshness> {
    const { rows } = await this.pool.query(
      `SELECT watermark_lsn::text, to_char(watermark_commit_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS commit_time, lag_seconds::float8
         FROM "${this.schema}".totes_freshness`);
    const r = rows[0] ?? {};
    return { watermarkLsn: r.watermark_lsn ?? null, watermarkCommitTime: r.commit_time ?? null, lagSeconds: r.lag_seconds ?? null };
  }

  /** Load in a loop until aborted; when the warehouse is unreachable, back off and try again. */
  async runLoop(signal: AbortSignal, idleMs = 200): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        const n = await this.loadAvailable();
        attempt = 0;
        if (n === 0) await sleep(idleMs, signal);
      } catch (err) {
        const wait = backoffMs(++attempt, 500, 30_000);
        log.warn({ err: (err as Error).message, retryInMs: Math.round(wait) }, 'load failed; retrying');
        await sleep(wait, signal);
      }
    }
  }
}

function manifestRows(manifest: Manifest): number {
  return manifest.tables.reduce((n, t) => n + t.rows, 0);
}

/** Whether a fact row's version depends on the version before it. */
function needsPreviousVersion(row: LoadRow): boolean {
  return !((row.source_op === 'c' || row.source_op === 'u') && row.unchanged === null);
}

/** Map with at most `limit` calls in flight, keeping order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

/** The most rows any one key has. */
function maxCount(rows: LoadRow[], key: string): number {
  const counts = new Map<unknown, number>();
  let max = 0;
  for (const r of rows) {
    const n = (counts.get(r[key]) ?? 0) + 1;
    counts.set(r[key], n);
    if (n > max) max = n;
  }
  return max;
}
