/**
 * The capture service: one Fargate task running the bundled capture service (service/capture.ts)
 * from the runtime stage of the repository's Docker image. Never two captures on one replication slot: a deployment
 * stops the old task before starting the new one (min 0 % / max 100 %). The container health
 * check is the service's own /health (503 when the slot lags too far or is lost), and ECS
 * replaces a task that fails it or exits.
 */
import { Construct } from 'constructs';
import { Duration, Stack, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { ENV } from '../../lib/config.ts';
import type { TotesConfig } from '../config.ts';
import { IMAGE } from '../image.ts';
import { REPO_ROOT } from '../repo.ts';
import { grantOversizeAccess } from './buckets.ts';

const HEALTH_PORT = 8080;

export interface CaptureServiceProps {
  config: TotesConfig;
  stream: kinesis.IStream;
  /** Changes over the Kinesis record limit are stored here (oversize/), by claim check. */
  ingestionBucket: s3.Bucket;
  sourceSecret: secretsmanager.ISecret;
  vpc: ec2.IVpc;
  subnets: ec2.SubnetSelection;
  securityGroup: ec2.ISecurityGroup;
  /** The CA bundle's file name in infra/certs/ (the image has that folder as /app/certs/). */
  caBundleFile: string;
}

export class CaptureService extends Construct {
  readonly cluster: ecs.Cluster;
  readonly service: ecs.FargateService;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: CaptureServiceProps) {
    super(scope, id);
    const cfg = props.config.capture;
    this.cluster = new ecs.Cluster(this, 'Cluster', { vpc: props.vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
    this.logGroup = new logs.LogGroup(this, 'LogGroup', { retention: props.config.logRetentionDays });

    const task = new ecs.FargateTaskDefinition(this, 'Task', { cpu: cfg.cpu, memoryLimitMiB: cfg.memoryMiB });
    task.addContainer('capture', {
      image: ecs.ContainerImage.fromAsset(REPO_ROOT, { platform: Platform.LINUX_AMD64, target: IMAGE.target }),
      command: [...IMAGE.command],
      essential: true,
      // Credentials are read from the secret at start; only names and the secret's ARN are here.
      environment: {
        [ENV.sourceSecret]: props.sourceSecret.secretArn,
        [ENV.streamName]: props.stream.streamName,
        [ENV.ingestionBucket]: props.ingestionBucket.bucketName,
        [ENV.slotName]: cfg.slotName,
        [ENV.publication]: cfg.publication,
        [ENV.heartbeatSeconds]: String(cfg.heartbeatSeconds),
        [ENV.maxHealthyLagSeconds]: String(cfg.maxHealthyLagSeconds),
        [ENV.healthPort]: String(HEALTH_PORT),
        [ENV.caFile]: `${IMAGE.certsDir}${props.caBundleFile}`,
        AWS_REGION: Stack.of(this).region,
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
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'capture' }),
    });
    props.stream.grantWrite(task.taskRole);
    props.sourceSecret.grantRead(task.taskRole);
    grantOversizeAccess(this, props.ingestionBucket, task.taskRole, 'write');

    this.service = new ecs.FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: task,
      desiredCount: cfg.running ? 1 : 0,
      minHealthyPercent: 0,
      maxHealthyPercent: 100,
      circuitBreaker: { enable: true, rollback: true },
      vpcSubnets: props.subnets,
      securityGroups: [props.securityGroup],
      assignPublicIp: false,
    });

    Validations.of(task).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason:
        "The environment holds only names, numbers and the source secret's ARN; the credentials themselves are read from Secrets Manager at start (lib/config.ts).",
    });
    Validations.of(task.obtainExecutionRole()).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'ecr:GetAuthorizationToken, which the execution role needs to pull the image, has no resource-level permissions.',
    });
  }
}
