/**
 * The loader: a long-running Fargate service beside capture, from the same image
 * (service/loader.ts), loading every new micro-batch as soon as it is listed, so the warehouse
 * stays seconds behind the source (a scheduled Lambda that stopped when a pass found nothing
 * left it about a minute behind). One task; a deployment starts the new task before it stops the
 * old (min 100 % / max 200 %): two loaders at once are safe (each load takes the shard's
 * advisory lock and re-plans when another moved it), and freshness has no gap. It runs in the
 * VPC to reach the warehouse and verifies the warehouse's certificate. With `loader.running`
 * false the service has no task.
 */
import { Construct } from 'constructs';
import { Duration } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { ENV } from '../../lib/config.ts';
import type { TotesConfig } from '../config.ts';
import { IMAGE } from '../image.ts';
import { grantMicroBatchAccess } from './buckets.ts';
import { grantSecretRead } from './database-secrets.ts';
import { databaseLocation, fargateService, serviceTask } from './service-task.ts';
import type { SubjectKeyStore } from './subject-keys.ts';

export interface LoaderServiceProps {
  config: TotesConfig;
  cluster: ecs.ICluster;
  processedBucket: s3.Bucket;
  /** Read to prove the micro-batches of a shard contiguous (stores/shard-stream.ts). */
  stream: kinesis.IStream;
  warehouseSecret: secretsmanager.ISecret;
  /** The loader opens sealed personal values where they enter the warehouse. */
  keyStore: SubjectKeyStore;
  subnets: ec2.SubnetSelection;
  securityGroup: ec2.ISecurityGroup;
  /** The CA bundle's file name in infra/certs/ (the image has that folder as /app/certs/). */
  caBundleFile: string;
}

export class LoaderService extends Construct {
  readonly service: ecs.FargateService;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: LoaderServiceProps) {
    super(scope, id);
    const cfg = props.config.loader;
    const { task, logGroup } = serviceTask(this, {
      service: 'loader',
      cpu: cfg.cpu,
      memoryMiB: cfg.memoryMiB,
      logRetentionDays: props.config.logRetentionDays,
      environment: {
        [ENV.warehouseSecret]: props.warehouseSecret.secretArn,
        ...databaseLocation(ENV.warehouseHost, ENV.warehousePort, props.config.warehouse),
        [ENV.processedBucket]: props.processedBucket.bucketName,
        [ENV.streamName]: props.stream.streamName,
        [ENV.warehouseSchema]: cfg.warehouseSchema,
        [ENV.loaderIdleMs]: String(cfg.idlePollMs),
        [ENV.caFile]: `${IMAGE.certsDir}${props.caBundleFile}`,
        ...props.keyStore.environment,
      },
      // SIGTERM lets the load in progress commit (one transaction of at most 200,000 rows).
      stopTimeout: Duration.seconds(120),
    });
    this.logGroup = logGroup;
    grantMicroBatchAccess(this, props.processedBucket, task.taskRole, 'read');
    grantSecretRead(props.warehouseSecret, task.taskRole);
    props.keyStore.grant(this, task.taskRole, 'read');
    props.stream.grantRead(task.taskRole);

    this.service = fargateService(this, {
      cluster: props.cluster,
      task,
      running: cfg.running,
      deployment: 'start-first',
      subnets: props.subnets,
      securityGroup: props.securityGroup,
    });
  }
}
