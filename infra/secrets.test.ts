/**
 * The secrets the stack creates survive what an operator does to the stack: CloudFormation
 * generates a new value (placeholder host, random password) on any change to a secret's
 * generation properties, wiping the credentials filled in. Every setting (infra/config.ts,
 * docs/deploy.md's list) is changed here, at once and in an imported VPC, and the secrets'
 * resources must come out the same, logical ids included; and they are kept when the stack is
 * deleted.
 */
import { describe, expect, it } from 'vitest';
import { SECRET_PLACEHOLDER_HOST } from '../cli/doctor-aws.ts';
import { DEFAULT_CONFIG } from './config.ts';
import { SECRET_TEMPLATES } from './constructs/database-secrets.ts';
import { synthesize } from './testing.ts';

/** A changed value for every setting but those that import a secret instead of creating one. */
const CHANGED = {
  stream: { mode: 'ON_DEMAND', shardCount: 4, retentionHours: 48 },
  capture: { running: true, cpu: 1024, memoryMiB: 2048, slotName: 'other_slot', publication: 'other_pub', heartbeatSeconds: 5, maxHealthyLagSeconds: 120 },
  processor: { memoryMiB: 2048, timeoutSeconds: 60, batchSize: 500, maxBatchingWindowSeconds: 3, maxRecordAgeSeconds: 3600, retryAttempts: 5 },
  loader: { running: true, cpu: 512, memoryMiB: 2048, idlePollMs: 500, warehouseSchema: 'dw' },
  archive: { infrequentAccessAfterDays: 60, glacierAfterDays: 365, lockMode: 'GOVERNANCE', lockRetentionDays: 30 },
  processed: { expireAfterDays: 14, deadLetterExpireAfterDays: 90 },
  logRetentionDays: 365,
  natGateways: 2,
  newVpcConnected: true,
  source: { securityGroupId: 'sg-0aaaaaaaaaaaaaaa1', host: 'totesys.example.com', port: 5433 },
  warehouse: { securityGroupId: 'sg-0bbbbbbbbbbbbbbb2', host: 'warehouse.example.com', port: 6432 },
  dbCaBundlePath: DEFAULT_CONFIG.dbCaBundlePath,
  alarms: Object.fromEntries(Object.entries(DEFAULT_CONFIG.alarms).map(([k, v]) => [k, v * 2])),
};
const IMPORTED_VPC = {
  vpc: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['eu-west-2a'], privateSubnetIds: ['subnet-0123456789abcdef0'] },
  newVpcConnected: false,
};
/** Settings that choose an existing secret: with them the stack creates none, by design. */
const IMPORTING = ['source.secretArn', 'source.secretKmsKeyArn', 'warehouse.secretArn', 'warehouse.secretKmsKeyArn'];

const leaves = (o: object, prefix = ''): string[] =>
  Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) && k !== 'vpc' ? leaves(v, `${prefix}${k}.`) : [`${prefix}${k}`]));

const secretResources = (override: object) => {
  const { template } = synthesize(override);
  return template.toJSON().Resources as Record<string, { Type: string }>;
};
const secretsOf = (resources: Record<string, { Type: string }>) =>
  Object.fromEntries(Object.entries(resources).filter(([, r]) => r.Type === 'AWS::SecretsManager::Secret'));

describe('the secrets the stack creates', () => {
  const defaults = secretsOf(secretResources({}));

  it('are two, kept when the stack is deleted or the resource replaced, with the frozen templates the first stacks were deployed with', () => {
    expect(Object.values(defaults)).toHaveLength(2);
    for (const secret of Object.values(defaults) as any[]) {
      expect(secret.DeletionPolicy).toBe('Retain');
      expect(secret.UpdateReplacePolicy).toBe('Retain');
      expect(JSON.parse(secret.Properties.GenerateSecretString.SecretStringTemplate).host).toBe(SECRET_PLACEHOLDER_HOST);
    }
    // the text deployed stacks hold: changing it would regenerate their filled-in values
    expect(
      Object.values(defaults)
        .map((s: any) => s.Properties.GenerateSecretString.SecretStringTemplate)
        .sort(),
    ).toEqual(
      [
        '{"host":"REPLACE-ME","username":"totes_cdc","dbname":"totesys","port":5432}',
        '{"host":"REPLACE-ME","username":"totes_loader","dbname":"warehouse","port":5432}',
      ].sort(),
    );
    expect(Object.values(SECRET_TEMPLATES).sort()).toEqual(
      Object.values(defaults)
        .map((s: any) => s.Properties.GenerateSecretString.SecretStringTemplate)
        .sort(),
    );
  });

  it('the changes cover every setting there is', () => {
    const changed = new Set([...leaves(CHANGED), 'vpc', ...IMPORTING]);
    expect(leaves(DEFAULT_CONFIG).filter((k) => !changed.has(k))).toEqual([]);
  });

  it.each([
    ["in the stack's VPC", CHANGED],
    ['in an imported VPC', { ...CHANGED, ...IMPORTED_VPC }],
  ])('come out the same, logical ids and generation properties, when every setting changes at once (%s)', (_, override) => {
    expect(secretsOf(secretResources(override))).toEqual(defaults);
  });
});
