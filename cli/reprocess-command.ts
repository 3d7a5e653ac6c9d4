/**
 * `totes reprocess`: the processor again over a range of one shard, read from the stream, for a
 * range the event source mapping gave up on. The work is local/reprocess.ts; this is flags,
 * defaults and what gets printed.
 */
import type { ParseArgsConfig } from 'node:util';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { ENV } from '../lib/config.ts';
import { PROCESSOR_BATCH_SIZE } from '../local/kinesis-poller.ts';
import { reprocessRange } from '../local/reprocess.ts';
import { DEFAULT_STACK, PROCESSED_BUCKET, STREAM_NAME } from '../local/stack.ts';
import { Processor } from '../processors/processor.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';

const say = (line: string) => process.stderr.write(`${line}\n`);

/** In AWS (TOTES_PROCESSED_BUCKET set) the defaults come from the environment; otherwise they are the local stack's. */
const inAws = Boolean(process.env[ENV.processedBucket]);
const endpoint = (env: string, port: number) => (process.env[env] || !inAws ? { default: process.env[env] ?? `http://127.0.0.1:${port}` } : {});

const USAGE = `totes reprocess --shard ID --from SEQ [--to SEQ] [options]

Runs the processor again over records of one shard, read from the stream, and writes their
micro-batches: for a batch the event source mapping gave up on (its on-failure queue message
names the shard and the first and last sequence numbers). Until then the loader holds that
shard's watermark at the gap (status line, /health, the ShardGapSeconds alarm); it loads the
new batches on its next pass. Processing a range again is harmless: each change loads once.

  --shard ID             the shard (e.g. shardId-000000000001)
  --from SEQ             the first record to process
  --to SEQ               the last record to process (default: the shard's newest)
  --stream NAME          the stream (default env TOTES_STREAM_NAME, locally ${STREAM_NAME})
  --bucket NAME          the processed bucket (default env TOTES_PROCESSED_BUCKET, locally ${PROCESSED_BUCKET})
  --kinesis-endpoint URL Kinesis endpoint (default env TOTES_KINESIS_ENDPOINT, locally the stack's kinesalite; unset in AWS)
  --s3-endpoint URL      S3 endpoint (default env TOTES_S3_ENDPOINT, locally the stack's s3rver; unset in AWS)
  --batch N              records per micro-batch (default ${PROCESSOR_BATCH_SIZE})`;

const SEQUENCE = /^\d+$/;

export const reprocessCommand = {
  summary: 'run the processor again over a shard range the event source mapping gave up on',
  usage: USAGE,
  options: {
    shard: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    stream: { type: 'string', default: process.env[ENV.streamName] ?? STREAM_NAME },
    bucket: { type: 'string', default: process.env[ENV.processedBucket] ?? PROCESSED_BUCKET },
    'kinesis-endpoint': { type: 'string', ...endpoint(ENV.kinesisEndpoint, DEFAULT_STACK.kinesisPort) },
    's3-endpoint': { type: 'string', ...endpoint(ENV.s3Endpoint, DEFAULT_STACK.s3Port) },
    batch: { type: 'string', default: String(PROCESSOR_BATCH_SIZE) },
  } satisfies NonNullable<ParseArgsConfig['options']>,

  async run(values: Record<string, string | boolean | undefined>): Promise<number> {
    const { shard, from, to } = values;
    const batchSize = Number(values.batch);
    const problem =
      typeof shard !== 'string' || shard === ''
        ? '--shard is required'
        : typeof from !== 'string' || !SEQUENCE.test(from)
          ? '--from must be a sequence number'
          : to !== undefined && (typeof to !== 'string' || !SEQUENCE.test(to) || BigInt(to) < BigInt(from))
            ? '--to must be a sequence number not before --from'
            : !Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000
              ? '--batch must be a whole number from 1 to 10000'
              : null;
    if (problem) {
      say(`totes reprocess: ${problem}\n\n${USAGE}`);
      return 2;
    }
    const client = kinesisClient({ kinesisEndpoint: values['kinesis-endpoint'] as string | undefined });
    const s3 = s3Client({ s3Endpoint: values['s3-endpoint'] as string | undefined });
    try {
      const processor = new Processor(new MicroBatchStore(s3, String(values.bucket)));
      const done = await reprocessRange({
        client,
        streamName: String(values.stream),
        shard: shard as string,
        from: from as string,
        to: to as string | undefined,
        consumer: processor.handler,
        batchSize,
      });
      say(
        done.records === 0
          ? `reprocess: no records of ${shard} from ${from}${to ? ` to ${to}` : ''} (trimmed from the stream, or not yet written)`
          : `reprocess: ${done.records.toLocaleString('en-GB')} records of ${shard}, ${from} to ${done.last}, in ${done.batches} micro-batches ` +
              `(${processor.metrics.deadLetters} dead letters); the loader takes them on its next pass`,
      );
      return done.records === 0 ? 1 : 0;
    } finally {
      client.destroy();
      s3.destroy();
    }
  },
};
