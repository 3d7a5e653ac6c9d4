/**
 * The personal-data key store in the template (constructs/subject-keys.ts): a bucket that can
 * truly delete, beside an archive that cannot, and exactly the grants each stage needs: capture
 * creates keys, the loader only reads them, the processor (which passes sealed values through)
 * has none.
 */
import { describe, expect, it } from 'vitest';
import { ENV } from '../lib/config.ts';
import { actionsOf, inspect, RUNNING, synthesize } from './testing.ts';

const { template } = synthesize(RUNNING);
const { resources, logicalIdOf, statementsOf } = inspect(template);
const bucketId = logicalIdOf('AWS::S3::Bucket', (p) => p.LoggingConfiguration?.LogFilePrefix === 'subject-keys/');
const bucket = resources('AWS::S3::Bucket')[bucketId];
const keyId = logicalIdOf('AWS::KMS::Key', (p) => p.Description === 'totes-cdc personal-data keys');
const ingestion = Object.values(resources('AWS::S3::Bucket')).find((b) => b.Properties.ObjectLockEnabled)!.Properties;

const taskOf = (name: string) =>
  Object.values(resources('AWS::ECS::TaskDefinition')).find((t) => t.Properties.ContainerDefinitions[0].Name === name)!.Properties;
const envOf = (name: string): Record<string, unknown> =>
  Object.fromEntries(taskOf(name).ContainerDefinitions[0].Environment.map((e: { Name: string; Value: unknown }) => [e.Name, e.Value]));
const processor = Object.values(resources('AWS::Lambda::Function')).find((f) => f.Properties.Environment?.Variables?.[ENV.processedBucket])!.Properties;
const roleOf = {
  capture: taskOf('capture').TaskRoleArn['Fn::GetAtt'][0] as string,
  loader: taskOf('loader').TaskRoleArn['Fn::GetAtt'][0] as string,
  processor: processor.Role['Fn::GetAtt'][0] as string,
};
/** A role's actions on the key bucket, its objects and the KMS key, sorted. */
const keyStoreActions = (role: string) =>
  statementsOf(role)
    .filter((s) => s.Effect === 'Allow' && [bucketId, keyId].some((id) => JSON.stringify(s.Resource).includes(id)))
    .flatMap(actionsOf)
    .sort();

describe('the key bucket', () => {
  it('has neither Object Lock nor versioning, so a destroyed key is gone, while the archive keeps both', () => {
    expect(bucket.Properties.ObjectLockEnabled).toBeFalsy();
    expect(bucket.Properties.ObjectLockConfiguration).toBeUndefined();
    expect(bucket.Properties.VersioningConfiguration).toBeUndefined();
    expect(ingestion.ObjectLockEnabled).toBe(true);
    expect(ingestion.ObjectLockConfiguration.Rule.DefaultRetention.Mode).toBe('COMPLIANCE');
    expect(ingestion.VersioningConfiguration).toEqual({ Status: 'Enabled' });
  });

  it('is on SSE-KMS under its own customer-managed key, rotated, both kept when the stack is deleted, with access logs', () => {
    expect(bucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0]).toEqual({
      BucketKeyEnabled: true,
      ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [keyId, 'Arn'] } },
    });
    const key = resources('AWS::KMS::Key')[keyId];
    expect(key.Properties.EnableKeyRotation).toBe(true);
    expect(key.DeletionPolicy).toBe('Retain');
    expect(bucket.DeletionPolicy).toBe('Retain');
    expect(bucket.Properties.LoggingConfiguration.DestinationBucketName.Ref).toMatch(/AccessLogs/);
  });
});

describe('grants on the key store', () => {
  it('let capture read and create keys (wrap, unwrap, put), never delete', () => {
    expect(keyStoreActions(roleOf.capture)).toEqual(['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey', 's3:GetObject', 's3:ListBucket', 's3:PutObject']);
  });

  it('let the loader only read and unwrap keys', () => {
    expect(keyStoreActions(roleOf.loader)).toEqual(['kms:Decrypt', 's3:GetObject', 's3:ListBucket']);
  });

  it('give the processor nothing: it passes sealed values through', () => {
    expect(keyStoreActions(roleOf.processor)).toEqual([]);
    expect(Object.keys(processor.Environment.Variables)).not.toContain(ENV.keysBucket);
  });

  it('let `totes forget`, through the policy an operator attaches, read and overwrite keys but not create new ones nor delete', () => {
    const policy = Object.values(resources('AWS::IAM::ManagedPolicy')).find((p) => p.Properties.Description?.startsWith('totes forget'))!.Properties;
    expect(policy.Roles ?? []).toEqual([]);
    const statements = policy.PolicyDocument.Statement as any[];
    expect(
      statements
        .filter((s) => [bucketId, keyId].some((id) => JSON.stringify(s.Resource).includes(id)))
        .flatMap(actionsOf)
        .sort(),
    ).toEqual(['kms:Decrypt', 'kms:GenerateDataKey', 's3:GetObject', 's3:ListBucket', 's3:PutObject']);
    expect(statements).toHaveLength(3);
  });

  it('no principal in the stack may delete a key object or schedule the KMS key for deletion', () => {
    const all = Object.keys(resources('AWS::IAM::Role')).flatMap(keyStoreActions);
    expect(all.filter((a) => a === 's3:*' || a === 'kms:*' || a.startsWith('s3:Delete') || a === 'kms:ScheduleKeyDeletion')).toEqual([]);
  });
});

describe('the services environment', () => {
  it('names the key bucket and the KMS key to capture and the loader', () => {
    for (const service of ['capture', 'loader'])
      expect(envOf(service), service).toMatchObject({
        [ENV.keysBucket]: { Ref: bucketId },
        [ENV.kmsKeyId]: { 'Fn::GetAtt': [keyId, 'Arn'] },
      });
    expect(envOf('capture')).not.toHaveProperty(ENV.masterKeyFile);
  });
});
