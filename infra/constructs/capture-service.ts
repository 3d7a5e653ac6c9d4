/**
 * The capture service: one Fargate task running the bundled capture service (service/capture.ts)
 * from the runtime stage of the repository's Docker image. Never two captures on one replication
 * slot: a deployment stops the old task before starting the new one (min 0 % / max 100 %). The
 * container health check is the service's own /health (503 when the slot lags too far or is
 * lost), and ECS replaces a task that fails it or exits.
 */
import { Construct } from 'constructs';
import { Duration } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { ENV } from '../../lib/config.ts';
import type { TotesConfig } from '../config.ts';
import { IMAGE } from '../image.ts';
import { grantOversizeAccess } from './buckets.ts';
import { grantSecretRead } from './database-secrets.ts';
import { databaseLocation, fargateService, serviceTask } from './service-task.ts';
import type { SubjectKeyStore } from './subject-keys.ts';

const HEALTH_PORT = 8080;

export interface CaptureServiceProps {
  config: TotesConfig;
  stream: kinesis.IStream;
  /** Changes over the Kinesis record limit are stored here (oversize/), by claim check. */
  ingestionBucket: s3.Bucket;
  sourceSecret: secretsmanager.ISecret;
  /** Capture seals personal values under their subject's key, creating it on first use. */
  keyStore: SubjectKeyStore;
  vpc: ec2.IVpc;
  subnets: ec2.SubnetSelection;
  securityGroup: ec2.ISecurityGroup;
  /** The CA bundle's file name in infra/certs/ (the image has that folder as /app/certs/). */
  caBundleFile: string;
}

export class CaptureService extends Construct {
  /** The cluster of both services (the loader's too). */
  readonly cluster: ecs.Cluster;
  readonly service: ecs.FargateService;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: CaptureServiceProps) {
    super(scope, id);
    const cfg = props.config.capture;
    this.cluster = new ecs.Cluster(this, 'Cluster', { vpc: props.vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
    const { task, logGroup } = serviceTask(this, {
      service: 'capture',
      cpu: cfg.cpu,
      memoryMiB: cfg.memoryMiB,
      logRetentionDays: props.config.logRetentionDays,
      environment: {
        [ENV.sourceSecret]: props.sourceSecret.secretArn,
        ...databaseLocation(ENV.sourceHost, ENV.sourcePort, props.config.source),
        [ENV.streamName]: props.stream.streamName,
        [ENV.ingestionBucket]: props.ingestionBucket.bucketName,
        [ENV.slotName]: cfg.slotName,
        [ENV.publication]: cfg.publication,
        [ENV.heartbeatSeconds]: String(cfg.heartbeatSeconds),
        [ENV.maxHealthyLagSeconds]: String(cfg.maxHealthyLagSeconds),
        [ENV.healthPort]: String(HEALTH_PORT),
        [ENV.caFile]: `${IMAGE.certsDir}${props.caBundleFile}`,
        ...props.keyStore.environment,
      },
      healthCheck: {
        command: ['CMD', 'node', '-e', `fetch('http://127.0.0.1:${HEALTH_PORT}/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(5),
        retries: 3,
        // The initial snapshot reports healthy; the grace covers connecting and creating the slot.
        startPeriod: Duration.seconds(120),
      },
      // capture/main.ts drains and acknowledges within 25 s of SIGTERM.
      stopTimeout: Duration.seconds(30),
    });
    this.logGroup = logGroup;
    props.stream.grantWrite(task.taskRole);
    grantSecretRead(props.sourceSecret, task.taskRole);
    grantOversizeAccess(this, props.ingestionBucket, task.taskRole, 'write');
    props.keyStore.grant(this, task.taskRole, 'create');

    this.service = fargateService(this, {
      cluster: this.cluster,
      task,
      running: cfg.running,
      deployment: 'stop-first',
      subnets: props.subnets,
      securityGroup: props.securityGroup,
    });
  }
}
