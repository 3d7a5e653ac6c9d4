/**
 * The loader: a Lambda (loader/lambda.ts) that merges new micro-batches into the warehouse,
 * started every minute by an EventBridge schedule (why a schedule: see loader/lambda.ts), one
 * run at a time (reserved concurrency 1: a run that overruns its minute makes the next one
 * wait, not run beside it). It runs in the VPC to reach the warehouse and verifies the
 * warehouse's certificate. With `loader.running` false the schedule is disabled.
 */
import { Construct } from 'constructs';
import { Duration } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { ENV } from '../../lib/config.ts';
import type { TotesConfig } from '../config.ts';
import { grantMicroBatchAccess } from './buckets.ts';
import { PipelineFunction } from './pipeline-function.ts';

export interface LoaderProps {
  config: TotesConfig;
  processedBucket: s3.Bucket;
  /** Read to prove the micro-batches of a shard contiguous (stores/shard-stream.ts). */
  stream: kinesis.IStream;
  warehouseSecret: secretsmanager.ISecret;
  vpc: ec2.IVpc;
  subnets: ec2.SubnetSelection;
  securityGroup: ec2.ISecurityGroup;
}

export class LoaderFunction extends Construct {
  readonly function: lambda.IFunction;
  readonly schedule: events.Rule;

  constructor(scope: Construct, id: string, props: LoaderProps) {
    super(scope, id);
    const cfg = props.config.loader;
    const { function: fn } = new PipelineFunction(this, 'Lambda', {
      entry: 'loader/lambda.ts',
      description: 'totes-cdc loader: merges micro-batches into the warehouse',
      memoryMiB: cfg.memoryMiB,
      timeout: Duration.seconds(cfg.timeoutSeconds),
      reservedConcurrency: 1,
      environment: {
        [ENV.processedBucket]: props.processedBucket.bucketName,
        [ENV.streamName]: props.stream.streamName,
        [ENV.warehouseSecret]: props.warehouseSecret.secretArn,
        [ENV.warehouseSchema]: cfg.warehouseSchema,
      },
      logRetentionDays: props.config.logRetentionDays,
      database: { vpc: props.vpc, subnets: props.subnets, securityGroup: props.securityGroup, caBundlePath: props.config.dbCaBundlePath },
    });
    grantMicroBatchAccess(this, props.processedBucket, fn, 'read');
    props.warehouseSecret.grantRead(fn);
    props.stream.grantRead(fn);
    // A failed run is not retried by Lambda either: the next scheduled run takes over.
    fn.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: Duration.minutes(1) });

    this.schedule = new events.Rule(this, 'EveryMinute', {
      description: 'Start the totes-cdc loader',
      enabled: cfg.running,
      schedule: events.Schedule.rate(Duration.minutes(1)),
      // A missed run is not worth retrying: the next one starts within a minute and loads everything pending.
      targets: [new targets.LambdaFunction(fn, { retryAttempts: 0, maxEventAge: Duration.minutes(1) })],
    });
    this.function = fn;
  }
}
