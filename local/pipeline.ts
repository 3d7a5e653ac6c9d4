/**
 * The pipeline's services wired as they are in AWS, against any endpoints:
 *   capture → Kinesis → { Firehose stand-in → ingestion bucket, processor → processed bucket } → loader → warehouse.
 * In AWS each runs on its own (Fargate task, Firehose, Lambda, Lambda); here they share a process,
 * each as its component (lib/log.ts), so every line says which one logged it.
 */
import { FirehoseStandin } from '../archiver/firehose-standin.ts';
import { OversizeStore } from '../stores/oversize-store.ts';
import { CaptureService, DEFAULT_CAPTURE_CONFIG, type CaptureConfig } from '../capture/capture-service.ts';
import { KinesisSink } from '../capture/kinesis-sink.ts';
import { EventSealer } from '../capture/event-sealer.ts';
import { LocalMasterKey } from '../stores/key-wrappers.ts';
import { SubjectKeys } from '../stores/subject-keys.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { asComponent, log } from '../lib/log.ts';
import { poolFor } from '../lib/pg.ts';
import { Loader } from '../loader/loader.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { BatchChain } from '../processors/batch-chain.ts';
import { Processor } from '../processors/processor.ts';
import { ARCHIVER_BATCH_SIZE, KinesisPoller, PROCESSOR_BATCH_SIZE } from './kinesis-poller.ts';
import { PollerCheckpoints } from './poller-checkpoints.ts';

export interface PipelineConfig {
  sourceUrl: string;
  warehouseUrl: string;
  kinesisEndpoint: string;
  s3Endpoint: string;
  streamName: string;
  ingestionBucket: string;
  processedBucket: string;
  /** The personal-data key store: capture seals personal values under it, the loader opens them (without it they travel in the clear). */
  keys?: { bucket: string; masterKeyFile: string };
  capture?: Partial<CaptureConfig>;
  /** Firehose buffering, shortened locally so the archive fills while you watch. */
  archiveIntervalMs?: number;
  processorBatchSize?: number;
  /** The processor mapping's batching window and its poll of an idle shard (KinesisPoller batchingWindowMs, idlePollMs). */
  processorBatchingWindowMs?: number;
  processorPollMs?: number;
  /** Least time between two of the loader's questions to one shard (ShardStream). */
  loaderAskIntervalMs?: number;
  /** false: the caller runs `loader` (the bench, as deployed); by default a loop here with 100 ms between idle passes. */
  runLoader?: boolean;
}

export class Pipeline {
  readonly kinesis;
  readonly s3;
  readonly sink: KinesisSink;
  readonly capture: CaptureService;
  readonly processor: Processor;
  readonly firehose: FirehoseStandin;
  readonly loader: Loader;
  readonly store: MicroBatchStore;
  readonly keys: SubjectKeys | null;
  private readonly warehousePool;
  private readonly pollers: KinesisPoller[] = [];
  private readonly abort = new AbortController();
  private running: Promise<unknown>[] = [];
  /** Set when the capture service stops with an error. */
  captureError: Error | null = null;

  constructor(readonly config: PipelineConfig) {
    this.kinesis = kinesisClient({ kinesisEndpoint: config.kinesisEndpoint });
    this.s3 = s3Client({ s3Endpoint: config.s3Endpoint });
    this.keys = config.keys ? new SubjectKeys(this.s3, config.keys.bucket, LocalMasterKey.fromFile(config.keys.masterKeyFile, true)) : null;
    this.sink = new KinesisSink({
      client: this.kinesis,
      streamName: config.streamName,
      oversize: new OversizeStore(this.s3, config.ingestionBucket),
      sealer: this.keys ? new EventSealer(this.keys) : undefined,
    });
    this.capture = new CaptureService({ ...DEFAULT_CAPTURE_CONFIG, sourceUrl: config.sourceUrl, createPrerequisites: true, ...config.capture }, this.sink);
    this.store = new MicroBatchStore(this.s3, config.processedBucket);
    this.processor = new Processor(this.store, new BatchChain(new ShardStream(this.kinesis, config.streamName)));
    this.firehose = new FirehoseStandin({
      s3: this.s3,
      bucket: config.ingestionBucket,
      deliveryStreamName: config.streamName,
      bufferIntervalMs: config.archiveIntervalMs ?? 5_000,
    });
    this.warehousePool = poolFor(config.warehouseUrl, 4);
    this.loader = new Loader(this.warehousePool, this.store, new ShardStream(this.kinesis, config.streamName, config.loaderAskIntervalMs), 'public', this.keys);
  }

  async start(): Promise<void> {
    await asComponent('loader', () => this.loader.ensureSchema());
    const processorPoller = new KinesisPoller({
      client: this.kinesis,
      streamName: this.config.streamName,
      consumer: this.processor.handler,
      batchSize: this.config.processorBatchSize ?? PROCESSOR_BATCH_SIZE,
      batchingWindowMs: this.config.processorBatchingWindowMs,
      idlePollMs: this.config.processorPollMs,
      name: 'processor',
      checkpoints: new PollerCheckpoints(this.s3, this.config.processedBucket, 'processor', this.config.streamName),
    });
    const firehosePoller = new KinesisPoller({
      client: this.kinesis,
      streamName: this.config.streamName,
      consumer: this.firehose.consume,
      batchSize: ARCHIVER_BATCH_SIZE,
      name: 'archiver',
      checkpoints: new PollerCheckpoints(this.s3, this.config.ingestionBucket, 'archiver', this.config.streamName),
      durableThrough: this.firehose.deliveredThrough,
      makeDurable: this.firehose.deliverNow,
    });
    this.pollers.push(processorPoller, firehosePoller);
    await Promise.all([asComponent('processor', () => processorPoller.start()), asComponent('archiver', () => firehosePoller.start())]);
    asComponent('archiver', () => this.firehose.start());
    if (this.config.runLoader !== false) this.running.push(asComponent('loader', () => this.loader.runLoop(this.abort.signal, 100)));
    this.running.push(
      asComponent('capture', () =>
        this.capture.run().catch((err: Error) => {
          this.captureError = err;
          log.error({ err: err.message }, 'capture stopped');
        }),
      ),
    );
  }

  async stop(): Promise<void> {
    await asComponent('capture', () => this.capture.stop().catch((err) => log.warn({ err: err.message }, 'capture stop')));
    await Promise.all(this.pollers.map((p) => p.stop()));
    await asComponent('archiver', () => this.firehose.stop().catch((err) => log.warn({ err: err.message }, 'archive flush on stop')));
    this.abort.abort();
    await Promise.allSettled(this.running);
    await this.warehousePool.end();
    this.kinesis.destroy();
    this.s3.destroy();
  }
}
