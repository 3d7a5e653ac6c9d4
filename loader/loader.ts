/**
 * The loader: merges micro-batches from the processed bucket into the warehouse, many to one
 * transaction, through the Warehouse port (warehouse.ts) that also owns exactly-once and the
 * watermarks. Batches of one shard are loaded in stream order.
 */
import { log } from '../lib/log.ts';
import { backoffMs, sleep } from '../lib/retry.ts';
import type pg from '../lib/pg.ts';
import type { LoadRow, LoadTableName } from '../formats/load-tables.ts';
import type { Manifest } from '../formats/manifest.ts';
import { decodeParquet } from '../formats/parquet.ts';
import type { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Warehouse, type LoadBatchInfo } from './warehouse.ts';

export class Loader extends Warehouse {
  constructor(
    pool: pg.Pool,
    private readonly store: MicroBatchStore,
    schema = 'public',
  ) {
    super(pool, schema);
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
      manifests.forEach((manifest, i) => {
        pending.push({ manifest, key: keys[i] });
      });
    }
    let loaded = 0;
    for (let start = 0; start < pending.length; ) {
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
      batch: { batchKey: manifest.batchId, shard: manifest.shard, events: manifest.events, manifestKey, heartbeat: manifest.heartbeat, ends: manifest.ends },
      tables: new Map(tables),
    };
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

/** Map with at most `limit` calls in flight, keeping order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}
