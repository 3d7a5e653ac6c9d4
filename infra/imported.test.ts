/**
 * A deployment into an existing VPC with existing secrets (one under a customer-managed KMS key,
 * the source's host given as a setting, as for an RDS-managed secret) and database security
 * groups, on an on-demand stream and with overridden thresholds: the configuration reaches the
 * template.
 */
import { describe, expect, it } from 'vitest';
import { ENV } from '../lib/config.ts';
import { synthesize, unacknowledgedNagFindings } from './testing.ts';

const SOURCE_SECRET = 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes/source-AbCdEf';
const WAREHOUSE_SECRET = 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes/warehouse-GhIjKl';
const SOURCE_KEY = 'arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const { stack, template } = synthesize({
  vpc: {
    vpcId: 'vpc-0123456789abcdef0',
    availabilityZones: ['eu-west-2a', 'eu-west-2b'],
    privateSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'],
  },
  source: {
    secretArn: SOURCE_SECRET,
    secretKmsKeyArn: SOURCE_KEY,
    host: 'totesys.abc123.eu-west-2.rds.amazonaws.com',
    securityGroupId: 'sg-0aaaaaaaaaaaaaaa1',
    port: 5433,
  },
  warehouse: { secretArn: WAREHOUSE_SECRET, securityGroupId: 'sg-0bbbbbbbbbbbbbbb2' },
  stream: { mode: 'ON_DEMAND' },
  archive: { infrequentAccessAfterDays: 60, glacierAfterDays: 365 },
  alarms: { warehouseFreshnessSeconds: 300 },
  capture: { running: false },
});
const resources = (type: string) => Object.values(template.findResources(type)).map((r) => r.Properties);

describe('an imported VPC, secrets and database security groups', () => {
  it('creates no VPC and no secrets', () => {
    template.resourceCountIs('AWS::EC2::VPC', 0);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
  });

  it('runs both services in the given subnets', () => {
    for (const service of resources('AWS::ECS::Service'))
      expect(service.NetworkConfiguration.AwsvpcConfiguration.Subnets).toEqual(['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2']);
  });

  it('passes the given secret ARNs, hosts and ports, and lets only the right service read each secret', () => {
    const env = (variable: string) =>
      resources('AWS::ECS::TaskDefinition')
        .map((t) => t.ContainerDefinitions[0].Environment)
        .find((e: any[]) => e.some((v) => v.Name === variable));
    expect(env(ENV.sourceSecret)).toEqual(
      expect.arrayContaining([
        { Name: ENV.sourceSecret, Value: SOURCE_SECRET },
        { Name: ENV.sourceHost, Value: 'totesys.abc123.eu-west-2.rds.amazonaws.com' },
        { Name: ENV.sourcePort, Value: '5433' },
      ]),
    );
    expect(env(ENV.warehouseSecret)).toEqual(
      expect.arrayContaining([
        { Name: ENV.warehouseSecret, Value: WAREHOUSE_SECRET },
        { Name: ENV.warehousePort, Value: '5432' },
      ]),
    );
    expect(env(ENV.warehouseSecret).some((v: any) => v.Name === ENV.warehouseHost)).toBe(false);
    const statements = resources('AWS::IAM::Policy').flatMap((p) => p.PolicyDocument.Statement);
    const secretStatements = statements.filter((s: any) => [s.Action].flat().includes('secretsmanager:GetSecretValue'));
    expect(secretStatements.map((s: any) => s.Resource).sort()).toEqual([SOURCE_SECRET, WAREHOUSE_SECRET]);
  });

  it('lets the readers of a secret under a customer-managed key decrypt it through Secrets Manager, and only those', () => {
    const decrypt = resources('AWS::IAM::Policy')
      .flatMap((p) => p.PolicyDocument.Statement.filter((s: any) => [s.Action].flat().includes('kms:Decrypt')).map((s: any) => ({ roles: p.Roles, s })))
      .filter(({ s }) => !JSON.stringify(s.Resource).includes('SubjectKeys')); // the personal-data key store's own key: subject-keys.test.ts
    expect(decrypt).toHaveLength(1);
    expect(decrypt[0].s.Resource).toBe(SOURCE_KEY);
    expect(JSON.stringify(decrypt[0].s.Condition)).toContain('secretsmanager.');
    const captureRole = resources('AWS::ECS::TaskDefinition').find((t) => t.ContainerDefinitions[0].Environment.some((v: any) => v.Name === ENV.sourceSecret))
      .TaskRoleArn['Fn::GetAtt'][0];
    expect(decrypt[0].roles).toEqual([{ Ref: captureRole }]);
  });

  it('opens each database security group to its one service on the database port', () => {
    const ingress = resources('AWS::EC2::SecurityGroupIngress');
    expect(ingress).toHaveLength(2);
    expect(ingress).toContainEqual(
      expect.objectContaining({
        GroupId: 'sg-0aaaaaaaaaaaaaaa1',
        FromPort: 5433,
        ToPort: 5433,
        SourceSecurityGroupId: { 'Fn::GetAtt': [expect.stringMatching(/CaptureSecurityGroup/), 'GroupId'] },
      }),
    );
    expect(ingress).toContainEqual(
      expect.objectContaining({
        GroupId: 'sg-0bbbbbbbbbbbbbbb2',
        FromPort: 5432,
        ToPort: 5432,
        SourceSecurityGroupId: { 'Fn::GetAtt': [expect.stringMatching(/LoaderSecurityGroup/), 'GroupId'] },
      }),
    );
  });
});

describe('configured values', () => {
  it('makes the stream on-demand, with no shard count', () => {
    const [stream] = resources('AWS::Kinesis::Stream');
    expect(stream.StreamModeDetails).toEqual({ StreamMode: 'ON_DEMAND' });
    expect(stream.ShardCount).toBeUndefined();
  });

  it('can leave the services without a task', () => {
    template.hasResourceProperties('AWS::ECS::Service', { DesiredCount: 0 });
  });

  it('uses the configured archive lifecycle and alarm threshold', () => {
    const archiveRule = resources('AWS::S3::Bucket')
      .flatMap((b) => b.LifecycleConfiguration?.Rules ?? [])
      .find((r: any) => r.Transitions);
    expect(archiveRule.Transitions.map((t: any) => t.TransitionInDays)).toEqual([60, 365]);
    expect(resources('AWS::CloudWatch::Alarm').find((a) => a.MetricName === 'WarehouseFreshnessSeconds').Threshold).toBe(300);
  });

  it('still passes cdk-nag', () => {
    expect(unacknowledgedNagFindings(stack, 'error')).toEqual([]);
  });
});
