/**
 * `totes run <service>`: one pipeline service per process, configured from the environment
 * (docker compose runs each in its own container). In AWS the processor and loader are
 * Lambdas and the archiver is Firehose; these are their local equivalents.
 */
import { FirehoseStandin } from '../archiver/firehose-standin.ts';
import { runCapture } from '../capture/main.ts';
import { ENV, databaseUrl, required } from '../lib/config.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { poolFor } from '../lib/pg.ts';
import { Loader } from '../loader/loader.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Processor } from '../processors/processor.ts';
import { ARCHIVER_BATCH_SIZE, KinesisPoller, PROCESSOR_BATCH_SIZE } from './kinesis-poller.ts';

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
    const store = new MicroBatchStore(s3Client({ s3Endpoint: env[ENV.s3Endpoint] }), required(env, ENV.processedBucket, 'the processed bucket name'));
    const poller = new KinesisPoller({
      client: kinesisClient({ kinesisEndpoint: env[ENV.kinesisEndpoint] }),
      streamName: required(env, ENV.streamName, 'the Kinesis stream name'),
      consumer: new Processor(store).handler,
      batchSize: PROCESSOR_BATCH_SIZE,
      name: 'processor',
    });
    await poller.start();
    await untilSignal();
    await poller.stop();
  },
  async archiver(env) {
    const streamName = required(env, ENV.streamName, 'the Kinesis stream name');
    const firehose = new FirehoseStandin({
      s3: s3Client({ s3Endpoint: env[ENV.s3Endpoint] }),
      bucket: required(env, ENV.ingestionBucket, 'the ingestion bucket name'),
      deliveryStreamName: streamName,
    });
    const poller = new KinesisPoller({
      client: kinesisClient({ kinesisEndpoint: env[ENV.kinesisEndpoint] }),
      streamName,
      consumer: firehose.consume,
      batchSize: ARCHIVER_BATCH_SIZE,
      name: 'archiver',
    });
    firehose.start();
    await poller.start();
    await untilSignal();
    await poller.stop();
    await firehose.stop();
  },
  async loader(env) {
    const store = new MicroBatchStore(s3Client({ s3Endpoint: env[ENV.s3Endpoint] }), required(env, ENV.processedBucket, 'the processed bucket name'));
    const loader = new Loader(poolFor(await databaseUrl(env, 'warehouse'), 2), store, env[ENV.warehouseSchema] ?? 'public');
    await loader.ensureSchema();
    const abort = new AbortController();
    const loop = loader.runLoop(abort.signal);
    await untilSignal();
    abort.abort();
    await loop;
  },
};
