/**
 * A Fargate task of one of the long-running services (capture, the loader): the runtime stage of
 * the repository's Docker image (one image for both, by command), run as the image's
 * unprivileged user with the heap cap derived from the task's memory, logging to an encrypted
 * log group of its own. Its children are made in the caller's scope, so their logical ids stay
 * those of the service's construct.
 */
import { type Duration, Stack, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { ServiceName } from '../../service/bundle.ts';
import { IMAGE, nodeOptions } from '../image.ts';
import { REPO_ROOT } from '../repo.ts';
import { encryptedLogGroup } from './log-group.ts';

export interface ServiceTaskProps {
  service: ServiceName;
  cpu: number;
  memoryMiB: number;
  logRetentionDays: number;
  /** Names, numbers and ARNs only: credentials are read from Secrets Manager at start. */
  environment: Record<string, string>;
  healthCheck?: ecs.HealthCheck;
  /** How long ECS waits after SIGTERM before it kills the container. */
  stopTimeout: Duration;
}

export function serviceTask(scope: Construct, props: ServiceTaskProps): { task: ecs.FargateTaskDefinition; logGroup: logs.LogGroup } {
  const logGroup = encryptedLogGroup(scope, 'LogGroup', props.logRetentionDays);
  const task = new ecs.FargateTaskDefinition(scope, 'Task', { cpu: props.cpu, memoryLimitMiB: props.memoryMiB });
  task.addContainer(props.service, {
    image: ecs.ContainerImage.fromAsset(REPO_ROOT, { platform: Platform.LINUX_AMD64, target: IMAGE.target }),
    command: IMAGE.command(props.service),
    user: IMAGE.user,
    essential: true,
    environment: { ...props.environment, NODE_OPTIONS: nodeOptions(props.memoryMiB), AWS_REGION: Stack.of(scope).region },
    ...(props.healthCheck ? { healthCheck: props.healthCheck } : {}),
    stopTimeout: props.stopTimeout,
    logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: props.service }),
  });
  Validations.of(task).acknowledge({
    id: 'AwsSolutions-ECS2',
    reason:
      "The environment holds only names, numbers and the database secret's ARN; the credentials themselves are read from Secrets Manager at start (lib/config.ts).",
  });
  Validations.of(task.obtainExecutionRole()).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason: 'ecr:GetAuthorizationToken, which the execution role needs to pull the image, has no resource-level permissions.',
  });
  return { task, logGroup };
}

/** The database's host and port from the settings, for lib/config.ts databaseUrl (over the secret's). */
export function databaseLocation(hostVar: string, portVar: string, db: { host?: string; port: number }): Record<string, string> {
  return { ...(db.host ? { [hostVar]: db.host } : {}), [portVar]: String(db.port) };
}

/**
 * The service of a task: `running` one task or none, in the private subnets without a public
 * address, a failed deployment rolled back; `deployment` says whether the old task stops before
 * the new one starts (min 0 % / max 100 %) or after (min 100 % / max 200 %).
 */
export function fargateService(
  scope: Construct,
  props: {
    cluster: ecs.ICluster;
    task: ecs.FargateTaskDefinition;
    running: boolean;
    deployment: 'stop-first' | 'start-first';
    subnets: ec2.SubnetSelection;
    securityGroup: ec2.ISecurityGroup;
  },
): ecs.FargateService {
  const stopFirst = props.deployment === 'stop-first';
  return new ecs.FargateService(scope, 'Service', {
    cluster: props.cluster,
    taskDefinition: props.task,
    desiredCount: props.running ? 1 : 0,
    minHealthyPercent: stopFirst ? 0 : 100,
    maxHealthyPercent: stopFirst ? 100 : 200,
    circuitBreaker: { enable: true, rollback: true },
    vpcSubnets: props.subnets,
    securityGroups: [props.securityGroup],
    assignPublicIp: false,
  });
}
