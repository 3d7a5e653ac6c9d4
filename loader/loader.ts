/**
 * The loader: merges micro-batches from the processed bucket into the warehouse, many to one
 * transaction, through the Warehouse port (warehouse.ts) that also owns exactly-once and the
 * shards' progress. Which
 * batches, and in what order, frontier.ts decides: per shard in stream order from the loaded
 * prefix, however the stream was cut into batches, with gaps held and shown.
 */
import { log } from '../lib/log.ts';
import { Retry, type RetryPolicy, sleep } from '../lib/retry.ts';
import type pg from '../lib/pg.ts';
import { LOAD_TABLES } from '../formats/load-tables.ts';
import { compareSequences, type Manifest } from '../formats/manifest.ts';
import { decodeParquet } from '../formats/parquet.ts';
import type { MicroBatchStore } from '../stores/microbatch-store.ts';
import { openRows, type SubjectKeys } from '../stores/subject-keys.ts';
import { KeyMoveNotLoadedError } from './key-moves.ts';
import { loadOrder, planShards, type Gap, type PendingBatch, type ShardPlan } from './frontier.ts';
import { newestHeartbeat, StalePlanError, type ShardAdvance } from './shard-progress.ts';
import type { NextRecord, ShardInfo, ShardStream } from '../stores/shard-stream.ts';
import { type BatchToLoad, type Freshness, PostgresWarehouse, type Warehouse, type WarehouseMetrics } from './warehouse.ts';

/** What the last pass found beyond what it loaded. */
export interface LoaderStatus {
  gaps: ({ shard: string } & Gap)[];
  /** Child shards waiting for their parents to be loaded to their end. */
  waiting: { shard: string; parents: string[] }[];
  /** The last pass's error, until a pass succeeds. */
  error: string | null;
  /** Batches taken, since the loader started, where the stream had aged out the proof that they follow the one before. */
  unprovenJunctions: number;
}

/** The shard list is asked of the stream at most this often. */
const SHARDS_TTL_MS = 2_000;
/** Loads of fewer rows read every table before their transaction starts; larger ones take each table as it arrives. */
const PIPELINED_ROWS = 20_000;
/** Rows merged in one transaction at most (a merge costs about the same for 300 rows as for 30,000). */
const MAX_ROWS_PER_TRANSACTION = 200_000;
/** The longest a pass asks the stream before it loads what is proven: a backlog of unchained batches loads as it is proven. */
export const PLAN_BUDGET_MS = 30_000;
/** Tables fetched from the processed bucket at once. */
const FETCHES_IN_FLIGHT = 32;
/** Loading while the warehouse or the stream is unreachable: every error, waits from 1 s up to 30 s, for ever. */
const LOAD_RETRY = { firstMs: 1_000, capMs: 30_000 } satisfies RetryPolicy;

export class Loader {
  readonly warehouse: Warehouse;
  status: LoaderStatus = { gaps: [], waiting: [], error: null, unprovenJunctions: 0 };
  /** Manifests are immutable: each is read once while it is pending. */
  private manifests = new Map<string, Manifest>();
  /** So are the stream's answers about which record follows which (but "none yet"). */
  private answers = new Map<string, NextRecord>();
  private shardList: { at: number; shards: ShardInfo[] } | null = null;
  private readonly fetches = limiter(FETCHES_IN_FLIGHT);
  private readonly decodes = limiter(1);

  /** Into `warehouse`; given a pool, the Postgres warehouse in its `schema`. */
  constructor(
    warehouse: Warehouse | pg.Pool,
    private readonly store: MicroBatchStore,
    private readonly stream: ShardStream,
    schema = 'public',
    /** Opens the personal values micro-batches carry sealed (null: a sealed value stops the load). */
    private readonly keys: SubjectKeys | null = null,
  ) {
    this.warehouse = 'loadBatches' in warehouse ? warehouse : new PostgresWarehouse(warehouse, schema);
  }

  get metrics(): WarehouseMetrics {
    return this.warehouse.metrics;
  }

  ensureSchema(): Promise<void> {
    return this.warehouse.ensureSchema();
  }

  freshness(): Promise<Freshness> {
    return this.warehouse.freshness();
  }

  /**
   * Load every batch that extends a shard's loaded prefix, many batches to one transaction (up
   * to `maxRowsPerTransaction` rows), since a merge costs about the same for 300 rows as for
   * 30,000; then record gaps and shards loaded to their end. Returns the number of batches loaded.
   */
  async loadAvailable(maxRowsPerTransaction = MAX_ROWS_PER_TRANSACTION, planUntil = Number.POSITIVE_INFINITY): Promise<number> {
    const shards = await this.shards();
    const states = await this.warehouse.shardStates(shards);
    const listed = new Map<string, Manifest>();
    const pending = new Map<string, PendingBatch[]>();
    for (const shard of shards) {
      const state = states.get(shard.id);
      if (state?.ended) continue;
      const keys = await this.store.listManifests(shard.id, state?.frontier ?? null);
      const batches = await mapLimited(keys, 8, async (key) => ({ key, manifest: this.manifests.get(key) ?? (await this.store.getManifest(key)) }));
      for (const b of batches) listed.set(b.key, b.manifest);
      pending.set(shard.id, batches);
    }
    this.manifests = listed;
    // answers are kept as they arrive, so a pass cut short still saves the next one its questions
    const ask = async (shard: string, after: string | null): Promise<NextRecord> => {
      const key = `${shard}:${after ?? ''}`;
      const known = this.answers.get(key);
      if (known) return known;
      // past the planning budget: load what is proven so far, ask again next pass
      if (Date.now() >= planUntil) return { kind: 'none' };
      const answer = await this.stream.next(shard, after);
      if (answer.kind === 'record' || answer.kind === 'end') this.answers.set(key, answer);
      return answer;
    };
    // the first transaction's batches, if every batch listed extends its shard: read while the stream is asked
    const early = this.readEarly(shards, pending, maxRowsPerTransaction);
    // the planner asks one junction after another; the questions it will likely ask go out together
    // (a junction some batch says it follows needs no question)
    const likely = [...pending].flatMap(([shard, batches]) => {
      if (batches.length === 0) return [];
      const claimed = new Set(batches.flatMap((b) => (b.manifest.follows ? [b.manifest.follows] : [])));
      // listed by last record: nothing is asked after the furthest, which no batch can follow yet
      const junctions = [states.get(shard)?.frontier ?? null, ...batches.slice(0, -1).map((b) => b.manifest.lastSequence)];
      return junctions.filter((after) => after === null || !claimed.has(after)).map((after) => ({ shard, after }));
    });
    await mapLimited(likely, 8, ({ shard, after }) => ask(shard, after));
    const plans = await planShards(shards, states, pending, ask);
    this.forgetAnswersBehind(plans);
    let loaded = 0;
    try {
      loaded = await this.loadPlans(plans, maxRowsPerTransaction, early);
      // said once they are loaded: a pass that fails plans them again, and would count them twice
      this.reportUnproven(plans);
      const changed = plans.filter((p) => {
        const before = states.get(p.shard);
        return p.ended !== (before?.ended ?? false) || (p.gap?.missing ?? null) !== (before?.gapMissing ?? null);
      });
      if (changed.length > 0 || loaded > 0) {
        await this.warehouse.settleShards(changed.map((p) => ({ shard: p.shard, frontier: p.to, ended: p.ended, gap: p.gap })));
      }
    } catch (err) {
      if (!(err instanceof StalePlanError)) throw err;
      log.info({ err: err.message }, 'another loader moved a shard; planning again');
    }
    this.status = {
      gaps: plans.flatMap((p) => (p.gap ? [{ shard: p.shard, ...p.gap }] : [])),
      waiting: plans.filter((p) => p.waitingFor.length > 0).map((p) => ({ shard: p.shard, parents: p.waitingFor })),
      error: null,
      unprovenJunctions: this.status.unprovenJunctions,
    };
    return loaded;
  }

  /** Answers about records behind every plan's frontier are not asked again. */
  private forgetAnswersBehind(plans: ShardPlan[]): void {
    const from = new Map(plans.map((p) => [p.shard, p.from]));
    for (const key of this.answers.keys()) {
      const split = key.lastIndexOf(':');
      const frontier = from.get(key.slice(0, split));
      const after = key.slice(split + 1);
      if (frontier && after && compareSequences(after, frontier) < 0) this.answers.delete(key);
    }
  }

  /**
   * A batch taken where the stream no longer holds the records that prove it follows the frontier
   * (the loader was behind by more than the stream's retention) is said, once, where an operator
   * looks: a batch the event source mapping gave up on there could not show as a gap.
   */
  private reportUnproven(plans: ShardPlan[]): void {
    for (const p of plans) {
      for (const j of p.unproven) {
        const batch = p.batches.find((b) => b.manifest.firstSequence === j.resumesAt);
        log.warn(
          { shard: p.shard, after: j.after, resumesAt: j.resumesAt, batchNewestCommit: batch?.manifest.maxCommitTime ?? null },
          "the stream no longer holds the records after this frontier (older than its retention): loading the next micro-batch in order without proof that none lies between; `totes verify` checks the warehouse, and `totes replay` over the archive up to the batch's newest commit fills anything missing",
        );
        this.status.unprovenJunctions++;
      }
    }
  }

  private async shards(): Promise<ShardInfo[]> {
    if (!this.shardList || Date.now() - this.shardList.at > SHARDS_TTL_MS) this.shardList = { at: Date.now(), shards: await this.stream.shards() };
    return this.shardList.shards;
  }

  /**
   * The plans' batches in load order (frontier.ts loadOrder), cut into transactions by rows. A
   * transaction starts as soon as it is planned, and takes each table as it is read and decoded
   * (warehouse.ts); the next transaction's batches are read while one merges. S3 latency and
   * Parquet decoding overlap the warehouse's work.
   */
  private async loadPlans(plans: ShardPlan[], maxRows: number, early: Map<string, BatchToLoad>): Promise<number> {
    const chunks = cutByRows(
      loadOrder(plans).map(({ plan, batch }) => ({ plan, ...batch })),
      maxRows,
    );
    const frontier = new Map(plans.map((p) => [p.shard, p.from]));
    const read = (chunk: (typeof chunks)[number]) => chunk.map((c) => early.get(c.key) ?? this.readBatch(c.manifest));
    let loaded = 0;
    let reading = chunks.length > 0 ? read(chunks[0]) : null;
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i];
      const frontierBefore = new Map(frontier);
      const advances: ShardAdvance[] = [];
      for (const shard of new Set(chunk.map((c) => c.plan.shard))) {
        const own = chunk.filter((c) => c.plan.shard === shard);
        const last = own[own.length - 1];
        advances.push({
          shard,
          from: frontier.get(shard) ?? null,
          to: last.manifest.lastSequence,
          lastManifestKey: last.key,
          heartbeat: newestHeartbeat(own.map((c) => c.manifest.heartbeat)),
        });
        frontier.set(shard, last.manifest.lastSequence);
      }
      const items = reading!;
      reading = i + 1 < chunks.length ? read(chunks[i + 1]) : null;
      // a small load is read whole first: overlapping its reads saves less than its transaction then waits on S3
      if (items.reduce((n, item) => n + item.rows, 0) < PIPELINED_ROWS) await Promise.all(items.flatMap((item) => [...item.tables.values()]));
      try {
        loaded += await this.warehouse.loadBatches(items, advances);
      } catch (err) {
        // a key change's new key in this transaction, its old key in the next (another shard): load the two together
        if (!(err instanceof KeyMoveNotLoadedError) || i + 1 >= chunks.length) throw err;
        log.info({ err: err.message }, 'a moved key waits on the next transaction: loading the two as one');
        chunks[i + 1] = [...chunk, ...chunks[i + 1]];
        // read afresh: the failed load may have filled the rows it was given in place
        reading = [...chunk.map((c) => this.readBatch(c.manifest)), ...reading!];
        for (const [shard, at] of frontierBefore) frontier.set(shard, at);
      }
    }
    return loaded;
  }

  /**
   * Start reading what the first transaction will likely hold: the batches listed, as if each
   * extends its shard (the usual case), in load order. A batch the plan then leaves out is
   * dropped unread by anyone; its read costs only time.
   */
  private readEarly(shards: ShardInfo[], pending: Map<string, PendingBatch[]>, maxRows: number): Map<string, BatchToLoad> {
    const assumed = shards.map((s) => ({ shard: s.id, parents: s.parents, batches: pending.get(s.id) ?? [] }));
    const [first = []] = cutByRows(
      loadOrder(assumed).map(({ batch }) => batch),
      maxRows,
    );
    return new Map(first.map((b) => [b.key, this.readBatch(b.manifest)]));
  }

  /**
   * A micro-batch, its tables' reads from the processed bucket started: fetched at most
   * FETCHES_IN_FLIGHT at a time, decoded one at a time in the order asked, so the first table a
   * load needs is ready first, not after every table has been decoded part way. Facts come first:
   * a load trusting its references takes them as they arrive (warehouse.ts). A table that
   * decodes to other than the rows its manifest counts fails its load.
   */
  private readBatch(manifest: Manifest): BatchToLoad {
    const factsFirst = [...manifest.tables].sort((a, b) => Number(LOAD_TABLES[b.table].kind === 'fact') - Number(LOAD_TABLES[a.table].kind === 'fact'));
    const tables = new Map(
      factsFirst.map((t) => {
        const bytes = this.fetches(() => this.store.getBytes(t.key));
        bytes.catch(() => undefined); // a failed fetch is seen through its decode, which may start after it fails
        const read = this.decodes(async () => {
          const rows = await decodeParquet(t.table, await bytes);
          await openRows(rows, this.keys);
          if (rows.length !== t.rows) throw new Error(`${t.key} holds ${rows.length} rows; its manifest says ${t.rows}: the batch is not loaded`);
          return rows;
        });
        read.catch(() => undefined); // seen where the load awaits it; not unhandled where a load ends first
        return [t.table, read] as const;
      }),
    );
    return {
      batch: { batchKey: manifest.batchId, shard: manifest.shard, events: manifest.events, ends: manifest.ends },
      rows: manifestRows(manifest),
      tables,
    };
  }

  /** Load in a loop until aborted; when the warehouse or the stream is unreachable, back off and try again. */
  async runLoop(signal: AbortSignal, idleMs = 200): Promise<void> {
    const retry = new Retry(LOAD_RETRY);
    while (!signal.aborted) {
      try {
        const n = await this.loadAvailable(MAX_ROWS_PER_TRANSACTION, Date.now() + PLAN_BUDGET_MS);
        retry.succeeded();
        if (n === 0) await sleep(idleMs, signal);
      } catch (err) {
        const wait = retry.failed(err);
        this.status = { ...this.status, error: (err as Error).message };
        log.warn({ err: (err as Error).message, retryInMs: Math.round(wait) }, 'load failed; retrying');
        await sleep(wait, signal);
      }
    }
  }
}

/** A function that runs what it is given at most `n` at a time, in the order given. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    if (running < n) running++;
    else await new Promise<void>((go) => waiting.push(go)); // a task that ends hands its place on
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}

/** Consecutive runs of batches of up to `maxRows` rows together (a bigger batch alone). */
function cutByRows<T extends { manifest: Manifest }>(queue: T[], maxRows: number): T[][] {
  const chunks: T[][] = [];
  let rows = Infinity;
  for (const item of queue) {
    const n = manifestRows(item.manifest);
    if (rows + n > maxRows) {
      chunks.push([]);
      rows = 0;
    }
    chunks[chunks.length - 1].push(item);
    rows += n;
  }
  return chunks;
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
