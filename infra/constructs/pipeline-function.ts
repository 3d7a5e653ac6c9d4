/**
 * A pipeline Lambda: one of the repository's handlers bundled by esbuild for the current
 * Node.js runtime, with its own log group and a role that can write only to that log group
 * (plus the network interfaces a VPC function needs). Callers grant the rest.
 */
import { basename, join } from 'node:path';
import { Construct } from 'constructs';
import { type Duration, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { REPO_ROOT } from '../repo.ts';
import { encryptedLogGroup } from './log-group.ts';

/** The Lambda package's root: the CA bundle is copied there under its own file name. */
const LAMBDA_TASK_ROOT = '/var/task/';

export interface PipelineFunctionProps {
  /** The handler module, relative to the repository root; it exports `handler`. */
  entry: string;
  description: string;
  memoryMiB: number;
  timeout: Duration;
  /** Concurrent invocations reserved, and at most allowed (unset: unreserved, unlimited). */
  reservedConcurrency?: number;
  environment: Record<string, string>;
  logRetentionDays: number;
  /** In a VPC to reach a database, with the CA bundle that verifies its certificate (checked: infra/ca-bundle.ts). */
  database?: { vpc: ec2.IVpc; subnets: ec2.SubnetSelection; securityGroup: ec2.ISecurityGroup; caBundlePath: string };
}

export class PipelineFunction extends Construct {
  readonly function: NodejsFunction;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: PipelineFunctionProps) {
    super(scope, id);
    this.logGroup = encryptedLogGroup(this, 'LogGroup', props.logRetentionDays);
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: props.description,
      ...(props.database ? { inlinePolicies: { NetworkInterfaces: networkInterfacePolicy() } } : {}),
    });
    this.logGroup.grantWrite(role);
    if (props.database) {
      Validations.of(role.node.defaultChild!).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'A VPC Lambda creates and deletes its own network interfaces; EC2 does not support resource-level permissions for these actions (the same actions as AWSLambdaVPCAccessExecutionRole, without its logs:* on every log group).',
      });
    }

    const caBundle = props.database?.caBundlePath;
    this.function = new NodejsFunction(this, 'Function', {
      entry: join(REPO_ROOT, props.entry),
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.X86_64,
      description: props.description,
      memorySize: props.memoryMiB,
      timeout: props.timeout,
      ...(props.reservedConcurrency ? { reservedConcurrentExecutions: props.reservedConcurrency } : {}),
      role,
      logGroup: this.logGroup,
      environment: {
        ...props.environment,
        ...(caBundle ? { TOTES_DB_CA_FILE: `${LAMBDA_TASK_ROOT}${basename(caBundle)}` } : {}),
        NODE_OPTIONS: '--enable-source-maps',
      },
      ...(props.database ? { vpc: props.database.vpc, vpcSubnets: props.database.subnets, securityGroups: [props.database.securityGroup] } : {}),
      bundling: {
        format: OutputFormat.CJS,
        target: 'node22',
        sourceMap: true,
        // The SDK clients are bundled at the versions the code is tested with, not the runtime's copy;
        // pg's optional native binding is never used.
        externalModules: ['pg-native'],
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir: string, outputDir: string) =>
            caBundle ? [`cp "${join(inputDir, caBundle)}" "${join(outputDir, basename(caBundle))}"`] : [],
        },
      },
    });
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'nodejs22.x is the runtime this code is built and tested for (README: Lambda runs nodejs22.x); moving to a newer runtime is a deliberate, tested change.',
    });
  }
}

function networkInterfacePolicy(): iam.PolicyDocument {
  return new iam.PolicyDocument({
    statements: [
      new iam.PolicyStatement({
        actions: [
          'ec2:CreateNetworkInterface',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        resources: ['*'],
      }),
    ],
  });
}
