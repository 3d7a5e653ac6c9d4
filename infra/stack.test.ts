/**
 * The synthesized template of a deployment with capture and the loader running (phase 2 of
 * docs/deploy.md), checked against issue 6: resources, security and cdk-nag. The archive and
 * the alarms have files of their own; phases.test.ts covers the default (phase 1) template.
 * One synthesis for the whole file (Lambda bundling skipped).
 */
import { Validations } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { ARCHIVE } from '../formats/archive-layout.ts';
import { ENV } from '../lib/config.ts';
import { DEFAULT_CONFIG } from './config.ts';
import { IMAGE } from './image.ts';
import { actionsOf, inspect, RUNNING, synthesize, unacknowledgedNagFindings } from './testing.ts';

const { stack, template } = synthesize(RUNNING);
const { resources, only, logicalIdOf, statementsOf } = inspect(template);

const taskOf = (name: string) =>
  resources('AWS::ECS::TaskDefinition')[logicalIdOf('AWS::ECS::TaskDefinition', (p) => p.ContainerDefinitions[0].Name === name)].Properties;
const envOf = (container: any): Record<string, any> => Object.fromEntries(container.Environment.map((e: any) => [e.Name, e.Value]));
const captureTask = taskOf('capture');
const captureContainer = captureTask.ContainerDefinitions[0];
const captureEnv = envOf(captureContainer);
const loaderTask = taskOf('loader');
const loaderContainer = loaderTask.ContainerDefinitions[0];
const loaderEnv = envOf(loaderContainer);
const serviceOf = (task: any) =>
  Object.values(resources('AWS::ECS::Service')).find((s) => s.Properties.TaskDefinition.Ref === logicalIdOf('AWS::ECS::TaskDefinition', (p) => p === task))!
    .Properties;
const processorId = logicalIdOf('AWS::Lambda::Function', (p) => p.Environment?.Variables?.TOTES_PROCESSED_BUCKET);
const processor = resources('AWS::Lambda::Function')[processorId].Properties;
const ingestionId = logicalIdOf('AWS::S3::Bucket', (p) => p.ObjectLockEnabled);
const streamId = only('AWS::Kinesis::Stream').id;
const queueId = only('AWS::SQS::Queue').id;

describe('capture service (Fargate)', () => {
  it('runs one task, never two at once on the slot, and rolls back a failed deployment', () => {
    expect(serviceOf(captureTask)).toMatchObject({
      LaunchType: 'FARGATE',
      DesiredCount: 1,
      DeploymentConfiguration: { MinimumHealthyPercent: 0, MaximumPercent: 100, DeploymentCircuitBreaker: { Enable: true, Rollback: true } },
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'DISABLED' } },
    });
  });

  it("runs the image's bundled service as its unprivileged user, the heap capped at half the task's memory", () => {
    expect(captureContainer.User).toBe(IMAGE.user);
    expect(captureTask.Memory).toBe(String(DEFAULT_CONFIG.capture.memoryMiB));
    expect(captureEnv.NODE_OPTIONS).toBe(`--enable-source-maps --max-old-space-size=${DEFAULT_CONFIG.capture.memoryMiB / 2}`);
  });

  it("runs the image's bundled service, health-checked on GET /health of TOTES_HEALTH_PORT, stopped within the drain bound", () => {
    expect(captureContainer.Command).toEqual(IMAGE.command('capture'));
    expect(captureContainer.Essential).toBe(true);
    const check = captureContainer.HealthCheck.Command.join(' ');
    expect(check).toContain(`http://127.0.0.1:${captureEnv[ENV.healthPort]}/health`);
    expect(check).toContain('process.exit(r.ok ? 0 : 1)');
    expect(captureContainer.HealthCheck).toMatchObject({ Interval: 30, Retries: 3 });
    expect(captureContainer.StopTimeout).toBeGreaterThan(25); // capture/main.ts STOP_BOUND_MS
  });

  it('is configured only through variables lib/config.ts knows, with the source as a secret ARN and TLS verified', () => {
    const known = new Set<string>(Object.values(ENV));
    for (const name of Object.keys(captureEnv)) if (name.startsWith('TOTES_')) expect(known).toContain(name);
    expect(captureEnv).not.toHaveProperty(ENV.sourceUrl);
    expect(captureEnv[ENV.sourceSecret]).toEqual({ Ref: expect.stringMatching(/^SecretsSource/) });
    expect(captureEnv[ENV.streamName]).toEqual({ Ref: streamId });
    expect(captureEnv[ENV.caFile]).toBe(`${IMAGE.certsDir}rds-ca-bundle.pem`);
    expect(captureEnv[ENV.slotName]).toBe(DEFAULT_CONFIG.capture.slotName);
    expect(captureEnv[ENV.sourcePort]).toBe(String(DEFAULT_CONFIG.source.port));
    expect(captureEnv[ENV.heartbeatSeconds]).toBe('2');
  });

  it('has Container Insights on, for RunningTaskCount', () => {
    template.hasResourceProperties('AWS::ECS::Cluster', { ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }] });
  });

  it('logs to a log group with retention', () => {
    const logGroup = captureContainer.LogConfiguration.Options['awslogs-group'].Ref;
    expect(resources('AWS::Logs::LogGroup')[logGroup].Properties.RetentionInDays).toBe(DEFAULT_CONFIG.logRetentionDays);
  });

  it('may write to the stream, read the source secret and keep oversize changes under oversize/ and create personal-data keys (subject-keys.test.ts), nothing else', () => {
    const taskRole = captureTask.TaskRoleArn['Fn::GetAtt'][0];
    const statements = statementsOf(taskRole);
    expect(statements.flatMap(actionsOf).sort()).toEqual(
      [
        'kinesis:ListShards',
        'kinesis:PutRecord',
        'kinesis:PutRecords',
        'kms:Decrypt',
        'kms:Encrypt',
        'kms:GenerateDataKey',
        's3:GetObject',
        's3:ListBucket',
        's3:PutObject',
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
      ].sort(),
    );
    const put = statements.find((s) => actionsOf(s).includes('s3:PutObject'));
    expect(JSON.stringify(put.Resource)).toContain('/oversize/*');
    expect(statements.find((s) => actionsOf(s).includes('kinesis:PutRecords')).Resource).toEqual({ 'Fn::GetAtt': [streamId, 'Arn'] });
    expect(statements.find((s) => actionsOf(s).includes('secretsmanager:GetSecretValue')).Resource).toEqual({ Ref: captureEnv[ENV.sourceSecret].Ref });
  });
});

describe('Kinesis data stream', () => {
  it('is provisioned with the configured shards, retention and encryption', () => {
    template.hasResourceProperties('AWS::Kinesis::Stream', {
      ShardCount: DEFAULT_CONFIG.stream.shardCount,
      StreamModeDetails: { StreamMode: 'PROVISIONED' },
      RetentionPeriodHours: DEFAULT_CONFIG.stream.retentionHours,
      StreamEncryption: { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' },
    });
  });
});

describe('Firehose archive', () => {
  it('reads the stream and writes GZIP to the ingestion bucket with the layout and buffering of archive-config.ts', () => {
    const { props } = only('AWS::KinesisFirehose::DeliveryStream');
    expect(props.DeliveryStreamType).toBe('KinesisStreamAsSource');
    expect(props.KinesisStreamSourceConfiguration.KinesisStreamARN).toEqual({ 'Fn::GetAtt': [streamId, 'Arn'] });
    const s3 = props.ExtendedS3DestinationConfiguration;
    expect(s3.BucketARN).toEqual({ 'Fn::GetAtt': [ingestionId, 'Arn'] });
    expect(s3.Prefix).toBe(ARCHIVE.prefix);
    expect(s3.ErrorOutputPrefix).toBe(ARCHIVE.errorPrefix);
    expect(s3.CompressionFormat).toBe('GZIP');
    expect(s3.BufferingHints).toEqual({ IntervalInSeconds: ARCHIVE.bufferIntervalSeconds, SizeInMBs: ARCHIVE.bufferSizeMiB });
    expect(s3.CloudWatchLoggingOptions.Enabled).toBe(true);
  });
});

describe('processor Lambda', () => {
  it('runs processors/lambda.ts handler on nodejs22.x, writing to the processed bucket', () => {
    expect(processor.Runtime).toBe('nodejs22.x');
    expect(processor.Handler).toBe('index.handler');
    expect(Object.keys(processor.Environment.Variables).filter((k) => k.startsWith('TOTES_'))).toEqual([ENV.processedBucket]);
  });

  it('is fed by the stream with bisect, partial batch failures, a record age bound, retries and an SQS on-failure destination', () => {
    const p = DEFAULT_CONFIG.processor;
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: processorId },
      EventSourceArn: { 'Fn::GetAtt': [streamId, 'Arn'] },
      StartingPosition: 'TRIM_HORIZON',
      BatchSize: p.batchSize,
      MaximumBatchingWindowInSeconds: 0,
      BisectBatchOnFunctionError: true,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      MaximumRecordAgeInSeconds: p.maxRecordAgeSeconds,
      MaximumRetryAttempts: p.retryAttempts,
      ParallelizationFactor: 1,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
    });
  });

  it('may only list, read and put micro-batches, read oversize changes, and read the stream', () => {
    const statements = statementsOf(processor.Role['Fn::GetAtt'][0]);
    const s3Actions = statements
      .flatMap(actionsOf)
      .filter((a) => a.startsWith('s3:'))
      .sort();
    expect(s3Actions).toEqual(['s3:GetObject', 's3:GetObject', 's3:ListBucket', 's3:PutObject']);
    const oversize = statements.filter((s) => JSON.stringify(s.Resource).includes('/oversize/*'));
    expect(oversize.flatMap(actionsOf)).toEqual(['s3:GetObject']);
    expect(statements.flatMap(actionsOf).some((a) => a.startsWith('secretsmanager:'))).toBe(false);
    expect(statements.flatMap(actionsOf)).toContain('kinesis:GetRecords');
  });
});

describe('loader service (Fargate)', () => {
  it('runs the same image as capture, as loader.cjs, as its unprivileged user, the warehouse as a secret ARN and TLS verified', () => {
    expect(loaderContainer.Image).toEqual(captureContainer.Image);
    expect(loaderContainer.Command).toEqual(IMAGE.command('loader'));
    expect(loaderContainer.User).toBe(IMAGE.user);
    expect(loaderEnv[ENV.warehouseSecret]).toEqual({ Ref: expect.stringMatching(/^SecretsWarehouse/) });
    expect(loaderEnv).not.toHaveProperty(ENV.warehouseUrl);
    expect(loaderEnv[ENV.caFile]).toBe(`${IMAGE.certsDir}rds-ca-bundle.pem`);
    expect(loaderEnv[ENV.loaderIdleMs]).toBe(String(DEFAULT_CONFIG.loader.idlePollMs));
    expect(loaderEnv.NODE_OPTIONS).toBe(`--enable-source-maps --max-old-space-size=${DEFAULT_CONFIG.loader.memoryMiB / 2}`);
    expect(loaderTask).toMatchObject({ Cpu: String(DEFAULT_CONFIG.loader.cpu), Memory: String(DEFAULT_CONFIG.loader.memoryMiB) });
  });

  it('runs continuously, one task, in the private subnets; a deployment starts the new task before it stops the old', () => {
    const service = serviceOf(loaderTask);
    expect(service).toMatchObject({
      LaunchType: 'FARGATE',
      DesiredCount: 1,
      DeploymentConfiguration: { MinimumHealthyPercent: 100, MaximumPercent: 200, DeploymentCircuitBreaker: { Enable: true, Rollback: true } },
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'DISABLED' } },
    });
    expect(service.Cluster).toEqual(serviceOf(captureTask).Cluster);
    template.resourceCountIs('AWS::Events::Rule', 0);
  });

  it('may read micro-batches, personal-data keys (subject-keys.test.ts), the stream and the warehouse secret, nothing of the source', () => {
    const statements = statementsOf(loaderTask.TaskRoleArn['Fn::GetAtt'][0]);
    expect(
      statements
        .flatMap(actionsOf)
        .filter((a) => a.startsWith('s3:'))
        .sort(),
    ).toEqual(['s3:GetObject', 's3:ListBucket']);
    const secretRead = statements.filter((s) => actionsOf(s).includes('secretsmanager:GetSecretValue'));
    expect(secretRead.map((s) => s.Resource)).toEqual([{ Ref: loaderEnv[ENV.warehouseSecret].Ref }]);
    expect(statements.flatMap(actionsOf)).toContain('kinesis:GetRecords');
  });
});

describe('secrets', () => {
  it('are created for both databases, and no service environment holds a credential or URL', () => {
    expect(Object.keys(resources('AWS::SecretsManager::Secret'))).toHaveLength(2);
    const environments = [captureEnv, loaderEnv, processor.Environment.Variables];
    for (const env of environments) {
      expect(env).not.toHaveProperty(ENV.sourceUrl);
      expect(env).not.toHaveProperty(ENV.warehouseUrl);
      expect(JSON.stringify(env)).not.toMatch(/password|postgres:\/\//i);
    }
  });
});

describe('networking', () => {
  it('creates a VPC with private subnets, flow logs and an S3 gateway endpoint', () => {
    template.resourceCountIs('AWS::EC2::VPC', 1);
    template.resourceCountIs('AWS::EC2::NatGateway', DEFAULT_CONFIG.natGateways);
    template.hasResourceProperties('AWS::EC2::FlowLog', { ResourceType: 'VPC' });
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway' });
  });

  it('lets the capture task and the loader out only to HTTPS and the database port', () => {
    for (const sg of Object.values(resources('AWS::EC2::SecurityGroup')).filter((g) => /capture|loader/.test(g.Properties.GroupDescription))) {
      expect(sg.Properties.SecurityGroupIngress).toBeUndefined();
      expect(sg.Properties.SecurityGroupEgress.map((e: any) => [e.IpProtocol, e.FromPort, e.ToPort]).sort()).toEqual([
        ['tcp', 443, 443],
        ['tcp', 5432, 5432],
      ]);
    }
  });
});

describe('log groups', () => {
  it('all have the configured retention (by default seven years, as the archive), and the processor logs to its own', () => {
    const groups = resources('AWS::Logs::LogGroup');
    expect(Object.keys(groups)).toHaveLength(5); // capture, loader, processor, Firehose, flow logs
    expect(DEFAULT_CONFIG.logRetentionDays).toBe(2557);
    for (const g of Object.values(groups)) expect(g.Properties.RetentionInDays).toBe(DEFAULT_CONFIG.logRetentionDays);
    expect(Object.keys(groups)).toContain(processor.LoggingConfig.LogGroup.Ref);
  });

  it("are all encrypted with the stack's rotated log key, which CloudWatch Logs may use for this account's log groups only", () => {
    const keyId = logicalIdOf('AWS::KMS::Key', (p) => p.Description === 'totes-cdc log groups');
    for (const [id, g] of Object.entries(resources('AWS::Logs::LogGroup'))) expect(g.Properties.KmsKeyId, id).toEqual({ 'Fn::GetAtt': [keyId, 'Arn'] });
    const key = resources('AWS::KMS::Key')[keyId];
    expect(key.Properties.EnableKeyRotation).toBe(true);
    expect(key.DeletionPolicy).toBe('Retain');
    const logs = key.Properties.KeyPolicy.Statement.find((st: any) => JSON.stringify(st.Principal).includes('logs.'));
    expect(JSON.stringify(logs.Condition.ArnLike['kms:EncryptionContext:aws:logs:arn'])).toContain(':log-group:*');
  });
});

describe('IAM', () => {
  it('has no wildcard action and no wildcard resource outside the two actions that cannot name one', () => {
    for (const [id, doc] of [
      ...Object.entries(resources('AWS::IAM::Policy')).map(([id, p]) => [id, p.Properties.PolicyDocument] as const),
      ...Object.entries(resources('AWS::IAM::Role')).flatMap(([id, r]) => (r.Properties.Policies ?? []).map((p: any) => [id, p.PolicyDocument] as const)),
    ]) {
      for (const s of doc.Statement) {
        expect(actionsOf(s), id).not.toContain('*');
        if (s.Resource === '*') {
          expect(
            actionsOf(s).every((x) => x === 'ecr:GetAuthorizationToken' || x.startsWith('ec2:') || x.startsWith('xray:')),
            `${id}: ${actionsOf(s)}`,
          ).toBe(true);
        }
      }
    }
  });
});

describe('cdk-nag AwsSolutions', () => {
  it('reports no unacknowledged errors or warnings', () => {
    expect(unacknowledgedNagFindings(stack, 'error')).toEqual([]);
    expect(unacknowledgedNagFindings(stack, 'warning')).toEqual([]);
  });

  it('has a reason for every acknowledgment', () => {
    const acknowledgments = stack.node
      .findAll()
      .flatMap((c) =>
        c.node.metadata
          .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
          .flatMap((m) => Object.entries(m.data as Record<string, { reason?: string } | string>)),
      );
    expect(acknowledgments.length).toBeGreaterThan(5);
    for (const [id, ack] of acknowledgments) {
      const reason = typeof ack === 'string' ? ack : ack.reason;
      expect(reason?.length ?? 0, id).toBeGreaterThan(30);
    }
  });
});

describe('buckets', () => {
  it('put the archive and the micro-batches on SSE-KMS with S3 Bucket Keys, and the access logs on SSE-S3 (all server access logging delivers to)', () => {
    const encryption = (id: string) => resources('AWS::S3::Bucket')[id].Properties.BucketEncryption.ServerSideEncryptionConfiguration[0];
    const processedId = logicalIdOf('AWS::S3::Bucket', (p) => p.LifecycleConfiguration?.Rules?.some((r: any) => r.Id === 'expire-manifests'));
    for (const id of [ingestionId, processedId])
      expect(encryption(id), id).toEqual({ BucketKeyEnabled: true, ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms' } });
    const logsId = logicalIdOf('AWS::S3::Bucket', (p) => p.LifecycleConfiguration?.Rules?.some((r: any) => r.Id === 'expire-access-logs'));
    expect(encryption(logsId)).toEqual({ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } });
  });
});
