/**
 * `totes run <service>`: one pipeline service per process, configured from the environment
 * (docker compose runs each in its own container). In AWS the processor and loader are
 * Lambdas and the archiver is Firehose; these are their local equivalents. The processor and
 * archiver keep their stream checkpoints in their own bucket, so a restart resumes there.
 *
 * Each checks at start what it needs (the stream, its buckets, the warehouse) and says what is
 * missing as a FatalError; runService turns an error thrown anywhere while it runs into the
 * rejection the CLI ends with one line (cli/main.ts).
 */
import { createServer } from 'node:http';
import { DescribeStreamSummaryCommand, type KinesisClient, ResourceNotFoundException } from '@aws-sdk/client-kinesis';
import { HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { FirehoseStandin } from '../archiver/firehose-standin.ts';
import { runCapture } from '../capture/main.ts';
import { ENV, optionalNumber, required } from '../lib/config.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { FatalError } from '../lib/fatal.ts';
import { asComponent } from '../lib/log.ts';
import { emitMetrics } from '../lib/metrics.ts';
import { runLoader } from '../loader/main.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { BatchChain } from '../processors/batch-chain.ts';
import { Processor, processorMetrics } from '../processors/processor.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { ARCHIVER_BATCH_SIZE, KinesisPoller, PROCESSOR_BATCH_SIZE } from './kinesis-poller.ts';
import { PollerCheckpoints } from './poller-checkpoints.ts';

type Env = Record<string, string | undefined>;

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

async function streamExists(client: KinesisClient, streamName: string): Promise<void> {
  try {
    await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
  } catch (err) {
    if (err instanceof ResourceNotFoundException)
      throw new FatalError(
        `Kinesis stream "${streamName}" does not exist: create it (compose's init service does), or set ${ENV.streamName} to the stream capture writes`,
      );
    throw err;
  }
}

async function bucketExists(s3: S3Client, bucket: string, setting: string): Promise<void> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if ((err as Error).name === 'NotFound' || (err as Error).name === 'NoSuchBucket')
      throw new FatalError(`bucket "${bucket}" does not exist: create it, or set ${setting} to an existing bucket`);
    throw err;
  }
}

/**
 * Run one service until it returns, each line it logs naming it. An error thrown anywhere
 * meanwhile (a timer, a socket) ends it as one thrown here would.
 */
export async function runService(name: string, env: Env): Promise<void> {
  let stray!: (err: unknown) => void;
  const failed = new Promise<never>((_, reject) => {
    stray = reject;
  });
  process.on('uncaughtException', stray);
  process.on('unhandledRejection', stray);
  try {
    await Promise.race([asComponent(name, () => SERVICES[name](env)), failed]);
  } finally {
    process.off('uncaughtException', stray);
    process.off('unhandledRejection', stray);
  }
}

export const SERVICES: Record<string, (env: Env) => Promise<void>> = {
  capture: runCapture,
  async processor(env) {
    const s3 = s3Client({ s3Endpoint: env[ENV.s3Endpoint] });
    const bucket = required(env, ENV.processedBucket, 'the processed bucket name');
    const client = kinesisClient({ kinesisEndpoint: env[ENV.kinesisEndpoint] });
    const streamName = required(env, ENV.streamName, 'the Kinesis stream name');
    await streamExists(client, streamName);
    await bucketExists(s3, bucket, ENV.processedBucket);
    const processor = new Processor(new MicroBatchStore(s3, bucket), new BatchChain(new ShardStream(client, streamName)));
    // as loader/main.ts: GET /health with TOTES_HEALTH_PORT set, and the metrics line the Lambda emits, every minute
    const healthPort = env[ENV.healthPort] ? optionalNumber(env, ENV.healthPort, 0) : null;
    const server =
      healthPort === null
        ? null
        : createServer((req, res) => {
            const health = processor.health;
            res.writeHead(req.url === '/health' ? (health.healthy ? 200 : 503) : 404, { 'content-type': 'application/json' });
            res.end(JSON.stringify(health));
          }).listen(healthPort);
    let before = { ...processor.metrics };
    const metrics = setInterval(
      () => {
        emitMetrics('processor', processorMetrics(processor.metrics, before));
        before = { ...processor.metrics };
      },
      optionalNumber(env, ENV.metricsSeconds, 60) * 1000,
    );
    const poller = new KinesisPoller({
      client,
      streamName,
      consumer: processor.handler,
      batchSize: PROCESSOR_BATCH_SIZE,
      name: 'processor',
      checkpoints: new PollerCheckpoints(s3, bucket, 'processor', streamName),
    });
    await poller.start();
    await untilSignal();
    clearInterval(metrics);
    server?.close();
    await poller.stop();
  },
  async archiver(env) {
    const streamName = required(env, ENV.streamName, 'the Kinesis stream name');
    const s3 = s3Client({ s3Endpoint: env[ENV.s3Endpoint] });
    const bucket = required(env, ENV.ingestionBucket, 'the ingestion bucket name');
    const client = kinesisClient({ kinesisEndpoint: env[ENV.kinesisEndpoint] });
    await streamExists(client, streamName);
    await bucketExists(s3, bucket, ENV.ingestionBucket);
    const firehose = new FirehoseStandin({ s3, bucket, deliveryStreamName: streamName });
    const poller = new KinesisPoller({
      client,
      streamName,
      consumer: firehose.consume,
      batchSize: ARCHIVER_BATCH_SIZE,
      name: 'archiver',
      checkpoints: new PollerCheckpoints(s3, bucket, 'archiver', streamName),
      durableThrough: firehose.deliveredThrough,
      makeDurable: firehose.deliverNow,
    });
    firehose.start();
    await poller.start();
    await untilSignal();
    await poller.stop();
    await firehose.stop();
  },
  async loader(env) {
    const s3 = s3Client({ s3Endpoint: env[ENV.s3Endpoint] });
    await bucketExists(s3, required(env, ENV.processedBucket, 'the processed bucket name'), ENV.processedBucket);
    s3.destroy();
    await runLoader(env, untilSignal());
  },
};
