/**
 * Lambda entry of the processor (Kinesis event source mapping with ReportBatchItemFailures).
 * Clients are built once per container, on the first invocation.
 */
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { ENV, required } from '../lib/config.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { emitMetrics } from '../lib/metrics.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { BatchChain } from './batch-chain.ts';
import { Processor, processorMetrics } from './processor.ts';

let processor: Processor | null = null;

/** The stream the records came from (arn:aws:kinesis:region:account:stream/NAME), asked which batch follows which. */
function chainFor(event: KinesisStreamEvent): BatchChain | null {
  const streamName = event.Records[0]?.eventSourceARN.split(':stream/')[1];
  return streamName ? new BatchChain(new ShardStream(kinesisClient({ kinesisEndpoint: process.env[ENV.kinesisEndpoint] }), streamName)) : null;
}

export async function handler(event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> {
  processor ??= new Processor(
    new MicroBatchStore(s3Client({ s3Endpoint: process.env[ENV.s3Endpoint] }), required(process.env, ENV.processedBucket, 'the processed bucket name')),
    chainFor(event),
  );
  const before = { ...processor.metrics };
  const result = await processor.handler(event);
  emitMetrics('processor', processorMetrics(processor.metrics, before));
  return result;
}
