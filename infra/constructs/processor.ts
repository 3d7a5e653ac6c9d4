/**
 * The processor: a Lambda on the change stream (processors/lambda.ts) that writes Parquet
 * micro-batches to the processed bucket. A failing batch is split to isolate the failing
 * record, retried, and after `maxRecordAgeSeconds` its sequence range goes to an SQS queue so
 * it can be replayed from the stream. Records the processor cannot decode never fail the
 * batch: it writes them to dead-letter/ in the bucket and counts them (DeadLetters metric).
 */
import { Construct } from 'constructs';
import { Duration, Validations } from 'aws-cdk-lib';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { KinesisEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { ENV } from '../../lib/config.ts';
import type { TotesConfig } from '../config.ts';
import { grantMicroBatchAccess, grantOversizeAccess } from './buckets.ts';
import { PipelineFunction } from './pipeline-function.ts';

export class ProcessorFunction extends Construct {
  readonly function: lambda.IFunction;
  readonly onFailureQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: { config: TotesConfig; stream: kinesis.IStream; processedBucket: s3.Bucket; ingestionBucket: s3.Bucket }) {
    super(scope, id);
    const cfg = props.config.processor;
    const { function: fn } = new PipelineFunction(this, 'Lambda', {
      entry: 'processors/lambda.ts',
      description: 'totes-cdc processor: change events to Parquet micro-batches',
      memoryMiB: cfg.memoryMiB,
      timeout: Duration.seconds(cfg.timeoutSeconds),
      environment: { [ENV.processedBucket]: props.processedBucket.bucketName },
      logRetentionDays: props.config.logRetentionDays,
    });
    grantMicroBatchAccess(this, props.processedBucket, fn, 'read-write');
    grantOversizeAccess(this, props.ingestionBucket, fn, 'read');

    this.onFailureQueue = new sqs.Queue(this, 'OnFailure', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.onFailureQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is itself the dead-letter destination of the processor event source mapping.',
    });
    fn.addEventSource(
      new KinesisEventSource(props.stream, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: cfg.batchSize,
        maxBatchingWindow: Duration.seconds(cfg.maxBatchingWindowSeconds),
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        maxRecordAge: Duration.seconds(cfg.maxRecordAgeSeconds),
        retryAttempts: cfg.retryAttempts,
        // One batch per shard at a time: the loader relies on each shard's batches in stream order.
        parallelizationFactor: 1,
        onFailure: new SqsDlq(this.onFailureQueue),
      }),
    );
    this.function = fn;
  }
}
