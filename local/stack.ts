/**
 * The one-command local stack: two embedded Postgres clusters (totesys and the warehouse),
 * kinesalite, s3rver, the pipeline and the business simulator. Starts fresh every time.
 *
 * Or on a totesys it did not create (`sourceUrl`): never seeded, never simulated against; what
 * it writes there is capture's (the slot, its snapshot progress and, on Postgres 13, its signal
 * row), plus capture's schema and the publication only when `applySetup` says so.
 */
import { requestSnapshot } from '../capture/chunked-snapshot.ts';
import { CAPTURE_STATE_DDL } from '../capture/source-setup.ts';
import { SIGNAL_TABLE_NAME } from '../formats/source-signals.ts';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { log } from '../lib/log.ts';
import { poolFor, inTransaction } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { Simulator } from '../totesys/simulator.ts';
import { Pipeline } from './pipeline.ts';
import { startKinesis, startPostgres, startS3, tempDir, type PostgresMajor, type Stoppable } from './servers.ts';

export interface StackOptions {
  sourcePort: number;
  /** totesys's Postgres major: 13 by default, as on RDS, so the local stack captures what production does. */
  sourceMajor: PostgresMajor;
  warehousePort: number;
  kinesisPort: number;
  s3Port: number;
  shards: number;
  seed: number;
  /** Seed size relative to the real database (1 = ~16k orders). */
  scale: number;
  heartbeatMs: number;
  /** An existing totesys to capture instead of the embedded one, which is created and seeded. */
  sourceUrl?: string;
  /** An existing (empty) database for the warehouse instead of the embedded one. */
  warehouseUrl?: string;
  slotName: string;
  publication: string;
  /** On a given source: create capture's schema and the publication when missing (the embedded source always gets them). */
  applySetup: boolean;
  /** On a given source: drop the slot on stop (with its snapshot progress and signal row); otherwise it stays. */
  dropSlotOnExit: boolean;
}

export const DEFAULT_STACK: StackOptions = {
  sourcePort: 5433,
  sourceMajor: 13,
  warehousePort: 5434,
  kinesisPort: 4567,
  s3Port: 4568,
  shards: 2,
  seed: 42,
  scale: 1,
  heartbeatMs: 1_000,
  slotName: 'totes_cdc',
  publication: 'totes_cdc',
  applySetup: false,
  dropSlotOnExit: false,
};

export const STREAM_NAME = 'totes-changes';
export const INGESTION_BUCKET = 'totes-ingestion';
export const PROCESSED_BUCKET = 'totes-processed';
/** The personal-data key store's bucket; its master key is a file in a directory the stack removes when it stops. */
export const KEYS_BUCKET = 'totes-keys';

export class LocalStack {
  pipeline!: Pipeline;
  sourceUrl = '';
  warehouseUrl = '';
  /** The key store's master key (a file the stack removes when it stops): `totes forget` needs it. */
  masterKeyFile = '';
  private servers: Stoppable[] = [];
  private simulatorAbort = new AbortController();
  private simulation: Promise<unknown> | null = null;
  readonly sourcePool;

  constructor(readonly options: StackOptions) {
    this.sourceUrl = options.sourceUrl ?? `postgres://postgres:postgres@127.0.0.1:${options.sourcePort}/totesys`;
    this.warehouseUrl = options.warehouseUrl ?? `postgres://postgres:postgres@127.0.0.1:${options.warehousePort}/warehouse`;
    this.sourcePool = poolFor(this.sourceUrl, 4);
  }

  /** True when the source is one this stack did not create: it is never seeded or simulated against. */
  get givenSource(): boolean {
    return this.options.sourceUrl !== undefined;
  }

  async start(onStep: (what: string) => void = () => undefined): Promise<void> {
    const o = this.options;
    const embedded = [!o.sourceUrl && 'totesys', !o.warehouseUrl && 'warehouse'].filter(Boolean);
    onStep(`starting ${embedded.length ? `Postgres (${embedded.join(', ')}), ` : ''}Kinesis and S3`);
    const servers = await Promise.all([
      o.sourceUrl ? null : startPostgres({ port: o.sourcePort, databases: ['totesys'], label: 'source', major: o.sourceMajor }),
      o.warehouseUrl ? null : startPostgres({ port: o.warehousePort, databases: ['warehouse'], label: 'warehouse' }),
      startKinesis({ port: o.kinesisPort, streams: [{ name: STREAM_NAME, shards: o.shards }] }),
      startS3({ port: o.s3Port, buckets: [INGESTION_BUCKET, PROCESSED_BUCKET, KEYS_BUCKET] }),
    ]);
    const [, , kinesis, s3] = servers;
    const keyDir = tempDir('master-key');
    this.masterKeyFile = join(keyDir, 'master.key');
    this.servers.push(...servers.filter((x): x is NonNullable<typeof x> => x !== null), { stop: async () => rmSync(keyDir, { recursive: true, force: true }) });
    if (this.givenSource) await this.snapshotIntoFreshWarehouse(onStep);
    else {
      onStep('creating and seeding totesys');
      await inTransaction(this.sourcePool, async (db) => {
        await createTotesys(db, { seed: o.seed, sizes: scaledSizes(o.scale) });
      });
    }
    onStep('starting the pipeline');
    this.pipeline = new Pipeline({
      sourceUrl: this.sourceUrl,
      warehouseUrl: this.warehouseUrl,
      kinesisEndpoint: kinesis.endpoint,
      s3Endpoint: s3.endpoint,
      streamName: STREAM_NAME,
      ingestionBucket: INGESTION_BUCKET,
      processedBucket: PROCESSED_BUCKET,
      keys: { bucket: KEYS_BUCKET, masterKeyFile: this.masterKeyFile },
      capture: {
        heartbeatMs: o.heartbeatMs,
        statusIntervalMs: 5_000,
        slotName: o.slotName,
        publicationName: o.publication,
        createPrerequisites: !this.givenSource || o.applySetup,
      },
    });
    await this.pipeline.start();
  }

  /**
   * The warehouse starts empty, but a slot left by an earlier run resumes where that run
   * stopped: ask for every table to be read again (capture creates a new slot with the same request).
   */
  private async snapshotIntoFreshWarehouse(onStep: (what: string) => void): Promise<void> {
    const { slotName, applySetup } = this.options;
    const slot = await this.sourcePool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()', [slotName]);
    if (slot.rowCount === 0) return;
    onStep(`slot ${slotName} exists (an earlier run): every table will be read again into the new warehouse`);
    if (applySetup) await this.sourcePool.query(CAPTURE_STATE_DDL);
    await requestSnapshot(this.sourcePool, slotName);
  }

  /** Resolves once capture streams; rejects with why it could not start (a SourceNotReady says what to fix). */
  async captureStreaming(): Promise<void> {
    for (;;) {
      if (this.pipeline.captureError) throw this.pipeline.captureError;
      if (this.pipeline.capture.metrics.state === 'streaming') return;
      await sleep(50);
    }
  }

  /** Start writing like the business at `rate` changes/s, up to `changes` (or forever). */
  simulate(opts: { rate: number; changes?: number; seed?: number }): Simulator {
    if (this.givenSource) throw new Error('never simulates against a totesys it did not create');
    const simulator = new Simulator(this.sourcePool, opts.seed ?? this.options.seed + 1);
    this.simulation = simulator
      .run({ rate: opts.rate, changes: opts.changes, signal: this.simulatorAbort.signal })
      .catch((err) => log.error({ err: err.message }, 'simulator stopped'));
    return simulator;
  }

  async stopSimulator(): Promise<void> {
    this.simulatorAbort.abort();
    await this.simulation;
  }

  async stop(): Promise<void> {
    await this.stopSimulator();
    await this.pipeline?.stop();
    if (this.givenSource && this.options.dropSlotOnExit) await this.dropSlot();
    await this.sourcePool.end();
    for (const s of this.servers.reverse()) await s.stop().catch(() => undefined);
  }

  /** The slot and what capture kept for it: its snapshot progress and its signal row (Postgres 13). */
  private async dropSlot(): Promise<void> {
    const { slotName } = this.options;
    // the stopped walsender releases the slot a moment after its connection ends
    for (let attempt = 0; ; attempt++) {
      const { rows } = await this.sourcePool.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
      if (rows.length === 0) break;
      if (!rows[0].active) {
        await this.sourcePool.query('SELECT pg_drop_replication_slot($1)', [slotName]);
        break;
      }
      if (attempt > 200) throw new Error(`slot ${slotName} is still in use 10 s after capture stopped: not dropped`);
      await sleep(50);
    }
    const state = await this.sourcePool.query(`SELECT to_regclass('totes_cdc.snapshot_progress') AS progress, to_regclass($1) AS signal`, [SIGNAL_TABLE_NAME]);
    if (state.rows[0].progress) await this.sourcePool.query('DELETE FROM totes_cdc.snapshot_progress WHERE slot_name = $1', [slotName]);
    if (state.rows[0].signal) await this.sourcePool.query(`DELETE FROM ${SIGNAL_TABLE_NAME} WHERE writer = $1`, [slotName]);
  }
}
