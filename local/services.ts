/**
 * `totes run <service>`: one pipeline service per process, configured from the environment
 * (docker compose runs each in its own container). In AWS the processor and loader are
 * Lambdas and the archiver is Firehose; these are their local equivalents. The processor and
 * archiver keep their stream checkpoints in their own bucket, so a restart resumes there.
 */
import { FirehoseStandin } from '../archiver/firehose-standin.ts';
import { runCapture } from '../capture/main.ts';
import { ENV, required } from '../lib/config.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { runLoader } from '../loader/main.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Processor } from '../processors/processor.ts';
import { ARCHIVER_BATCH_SIZE, KinesisPoller, PROCESSOR_BATCH_SIZE } from './kinesis-poller.ts';
import { PollerCheckpoints } from './poller-checkpoints.ts';

type Env = Record<string, string | undefined>;

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

export const SERVICES: Record<string, (env: Env) => Promise<void>> = {
  capture: runCapture,
  async processor(env) {
    const s3 = s3Client({ s3Endpoint: env[ENV.s3Endpoint] });
    const bucket = required(env, ENV.processedBucket, 'the processed bucket name');
    const streamName = required(env, ENV.streamName, 'the Kinesis stream name');
    const poller = new KinesisPoller({
      client: kinesisClient({ kinesisEndpoint: env[ENV.kinesisEndpoint] }),
      streamName,
      consumer: new Processor(new MicroBatchStore(s3, bucket)).handler,
      batchSize: PROCESSOR_BATCH_SIZE,
      name: 'processor',
      checkpoints: new PollerCheckpoints(s3, bucket, 'processor', streamName),
    });
    await poller.start();
    await untilSignal();
    await poller.stop();
  },
  async archiver(env) {
    const streamName = required(env, ENV.streamName, 'the Kinesis stream name');
    const s3 = s3Client({ s3Endpoint: env[ENV.s3Endpoint] });
    const bucket = required(env, ENV.ingestionBucket, 'the ingestion bucket name');
    const firehose = new FirehoseStandin({ s3, bucket, deliveryStreamName: streamName });
    const poller = new KinesisPoller({
      client: kinesisClient({ kinesisEndpoint: env[ENV.kinesisEndpoint] }),
      streamName,
      consumer: firehose.consume,
      batchSize: ARCHIVER_BATCH_SIZE,
      name: 'archiver',
      checkpoints: new PollerCheckpoints(s3, bucket, 'archiver', streamName),
      durableThrough: firehose.deliveredThrough,
    });
    firehose.start();
    await poller.start();
    await untilSignal();
    await poller.stop();
    await firehose.stop();
  },
  loader: (env) => runLoader(env, untilSignal()),
};
