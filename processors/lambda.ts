/**
 * Lambda entry of the processor (Kinesis event source mapping with ReportBatchItemFailures).
 * Clients are built once per container, on the first invocation.
 */
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { ENV, required } from '../lib/config.ts';
import { s3Client } from '../lib/aws.ts';
import { emitMetrics } from '../lib/metrics.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { Processor } from './processor.ts';

let processor: Processor | null = null;

export async function handler(event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> {
  processor ??= new Processor(
    new MicroBatchStore(s3Client({ s3Endpoint: process.env[ENV.s3Endpoint] }), required(process.env, ENV.processedBucket, 'the processed bucket name')),
  );
  const before = { ...processor.metrics };
  const result = await processor.handler(event);
  emitMetrics('processor', {
    Events: processor.metrics.events - before.events,
    DeadLetters: processor.metrics.deadLetters - before.deadLetters,
  });
  return result;
}
