/**
 * The one-command local stack: two embedded Postgres clusters (totesys and the warehouse),
 * kinesalite, s3rver, the pipeline and the business simulator. Starts fresh every time.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { log } from '../lib/log.ts';
import { poolFor, inTransaction } from '../lib/pg.ts';
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
  private servers: Stoppable[] = [];
  private simulatorAbort = new AbortController();
  private simulation: Promise<unknown> | null = null;
  readonly sourcePool;

  constructor(readonly options: StackOptions) {
    this.sourceUrl = `postgres://postgres:postgres@127.0.0.1:${options.sourcePort}/totesys`;
    this.warehouseUrl = `postgres://postgres:postgres@127.0.0.1:${options.warehousePort}/warehouse`;
    this.sourcePool = poolFor(this.sourceUrl, 4);
  }

  async start(onStep: (what: string) => void = () => undefined): Promise<void> {
    const o = this.options;
    onStep('starting Postgres, Kinesis and S3');
    const [source, warehouse, kinesis, s3] = await Promise.all([
      startPostgres({ port: o.sourcePort, databases: ['totesys'], label: 'source', major: o.sourceMajor }),
      startPostgres({ port: o.warehousePort, databases: ['warehouse'], label: 'warehouse' }),
      startKinesis({ port: o.kinesisPort, streams: [{ name: STREAM_NAME, shards: o.shards }] }),
      startS3({ port: o.s3Port, buckets: [INGESTION_BUCKET, PROCESSED_BUCKET, KEYS_BUCKET] }),
    ]);
    const keyDir = tempDir('master-key');
    this.servers.push(source, warehouse, kinesis, s3, { stop: async () => rmSync(keyDir, { recursive: true, force: true }) });
    onStep('creating and seeding totesys');
    await inTransaction(this.sourcePool, async (db) => {
      await createTotesys(db, { seed: o.seed, sizes: scaledSizes(o.scale) });
    });
    onStep('starting the pipeline');
    this.pipeline = new Pipeline({
      sourceUrl: this.sourceUrl,
      warehouseUrl: this.warehouseUrl,
      kinesisEndpoint: kinesis.endpoint,
      s3Endpoint: s3.endpoint,
      streamName: STREAM_NAME,
      ingestionBucket: INGESTION_BUCKET,
      processedBucket: PROCESSED_BUCKET,
      keys: { bucket: KEYS_BUCKET, masterKeyFile: join(keyDir, 'master.key') },
      capture: { heartbeatMs: o.heartbeatMs, statusIntervalMs: 5_000 },
    });
    await this.pipeline.start();
  }

  /** Start writing like the business at `rate` changes/s, up to `changes` (or forever). */
  simulate(opts: { rate: number; changes?: number; seed?: number }): Simulator {
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
    await this.sourcePool.end();
    for (const s of this.servers.reverse()) await s.stop().catch(() => undefined);
  }
}
