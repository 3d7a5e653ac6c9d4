/**
 * The buckets in the template, the archive above all: the raw archive is the system of record
 * replay rebuilds from, so it must be immutable in fact and readable at any age.
 */
import { Validations } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { ARCHIVE, RAW_PREFIX } from '../formats/archive-layout.ts';
import { ARCHIVE_DENIED_ACTIONS } from './constructs/buckets.ts';
import { DEFAULT_CONFIG } from './config.ts';
import { actionsOf, inspect, RUNNING, synthesize } from './testing.ts';

const { stack, template } = synthesize(RUNNING);
const { resources, only, logicalIdOf, statementsOf } = inspect(template);
const buckets = resources('AWS::S3::Bucket');
const policies = Object.values(resources('AWS::S3::BucketPolicy'));
const ingestionId = logicalIdOf('AWS::S3::Bucket', (p) => p.ObjectLockEnabled);
const processedId = logicalIdOf('AWS::S3::Bucket', (p) => p.LoggingConfiguration?.LogFilePrefix === 'processed/');
const ingestion = buckets[ingestionId].Properties;
const policyOf = (bucketId: string) => policies.find((p) => p.Properties.Bucket.Ref === bucketId)!.Properties.PolicyDocument.Statement as any[];
/** Whether a policy resource names the ingestion bucket or its objects. */
const onIngestion = (resource: unknown) => JSON.stringify(resource ?? '').includes(ingestionId);

describe('every bucket', () => {
  it('blocks public access, is encrypted (which way: stack.test.ts), denies plain HTTP and is kept when the stack is deleted', () => {
    expect(Object.keys(buckets)).toHaveLength(4); // the archive, micro-batches, access logs, personal-data keys
    for (const [id, b] of Object.entries(buckets)) {
      expect(b.Properties.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(['AES256', 'aws:kms']).toContain(b.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm);
      expect(policyOf(id)).toContainEqual(expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }));
      expect(b.DeletionPolicy).toBe('Retain');
    }
  });
});

describe('the ingestion bucket (raw archive)', () => {
  it('is versioned, with every object version under Object Lock for the configured retention', () => {
    expect(ingestion.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(ingestion.ObjectLockEnabled).toBe(true);
    expect(ingestion.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: DEFAULT_CONFIG.archive.lockMode, Days: DEFAULT_CONFIG.archive.lockRetentionDays } },
    });
    expect(DEFAULT_CONFIG.archive.lockMode).toBe('COMPLIANCE');
  });

  it('refuses deletes, delete markers included, and loosening a lock, to every principal', () => {
    const deny = policyOf(ingestionId).find((s) => s.Sid === 'ArchiveIsImmutable');
    expect(deny).toMatchObject({ Effect: 'Deny', Principal: { AWS: '*' } });
    expect(actionsOf(deny).sort()).toEqual(
      ['s3:BypassGovernanceRetention', 's3:DeleteObject', 's3:DeleteObjectVersion', 's3:PutObjectLegalHold', 's3:PutObjectRetention'].sort(),
    );
    expect(JSON.stringify(deny.Resource)).toContain(`"${ingestionId}","Arn"]},"/*"`);
  });

  it('moves every object, however small, to Standard-IA and then Glacier Instant Retrieval, and never to a class replay would have to restore', () => {
    expect(ingestion.LifecycleConfiguration.TransitionDefaultMinimumObjectSize).toBe('varies_by_storage_class');
    const rules = ingestion.LifecycleConfiguration.Rules as any[];
    expect(rules).toContainEqual(
      expect.objectContaining({
        Status: 'Enabled',
        Transitions: [
          { StorageClass: 'STANDARD_IA', TransitionInDays: DEFAULT_CONFIG.archive.infrequentAccessAfterDays },
          { StorageClass: 'GLACIER_IR', TransitionInDays: DEFAULT_CONFIG.archive.glacierAfterDays },
        ],
      }),
    );
    const classes = rules.flatMap((r) => [...(r.Transitions ?? []), ...(r.NoncurrentVersionTransitions ?? [])].map((t: any) => t.StorageClass));
    for (const needsRestore of ['GLACIER', 'DEEP_ARCHIVE']) expect(classes).not.toContain(needsRestore);
    expect(rules.some((r) => r.ExpirationInDays || r.NoncurrentVersionExpiration)).toBe(false);
  });

  it('is written by a Firehose role that may add and read objects under its prefixes, and nothing that deletes or changes a lock', () => {
    const delivery = only('AWS::KinesisFirehose::DeliveryStream').props;
    const roleId = delivery.ExtendedS3DestinationConfiguration.RoleARN['Fn::GetAtt'][0];
    expect(delivery.KinesisStreamSourceConfiguration.RoleARN['Fn::GetAtt'][0]).toBe(roleId);
    const role = resources('AWS::IAM::Role')[roleId].Properties;
    expect(role.AssumeRolePolicyDocument.Statement).toEqual([
      expect.objectContaining({
        Principal: { Service: 'firehose.amazonaws.com' },
        Condition: { StringEquals: { 'sts:ExternalId': { Ref: 'AWS::AccountId' } } },
      }),
    ]);
    const statements = statementsOf(roleId);
    const s3 = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')));
    expect(s3.flatMap(actionsOf).sort()).toEqual(
      ['s3:AbortMultipartUpload', 's3:GetBucketLocation', 's3:GetObject', 's3:ListBucket', 's3:ListBucketMultipartUploads', 's3:PutObject'].sort(),
    );
    const put = s3.find((s) => actionsOf(s).includes('s3:PutObject'));
    const errorPrefix = ARCHIVE.errorPrefix.slice(0, ARCHIVE.errorPrefix.indexOf('!'));
    expect(JSON.stringify(put.Resource)).toContain(`/${RAW_PREFIX}*`);
    expect(JSON.stringify(put.Resource)).toContain(`/${errorPrefix}*`);
    expect(
      statements
        .flatMap(actionsOf)
        .filter((a) => !a.startsWith('s3:'))
        .sort(),
    ).toEqual(
      [
        'kinesis:DescribeStream',
        'kinesis:DescribeStreamSummary',
        'kinesis:GetRecords',
        'kinesis:GetShardIterator',
        'kinesis:ListShards',
        'logs:PutLogEvents',
      ].sort(),
    );
  });

  it('is not deletable through any policy in the stack, and no cdk-nag acknowledgement lets a delete through', () => {
    const grants = [
      ...Object.values(resources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement),
      ...Object.values(resources('AWS::IAM::Role')).flatMap((r) => (r.Properties.Policies ?? []).flatMap((p: any) => p.PolicyDocument.Statement)),
    ].filter((s) => s.Effect === 'Allow' && onIngestion(s.Resource));
    const risky = (a: string) =>
      a === 's3:*' || a.startsWith('s3:Delete') || /^s3:(PutObjectRetention|PutObjectLegalHold|BypassGovernanceRetention|PutLifecycle|PutBucket)/.test(a);
    expect(grants.length).toBeGreaterThan(3);
    expect(grants.flatMap(actionsOf).filter(risky)).toEqual([]);
    const acknowledged = stack.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY).flatMap((m) => Object.keys(m.data as object)));
    expect(acknowledged.filter((id) => /Action::s3:(Delete|PutObjectRetention|PutObjectLegalHold|\*)/.test(id))).toEqual([]);
    for (const action of ARCHIVE_DENIED_ACTIONS) expect(grants.flatMap(actionsOf)).not.toContain(action);
  });

  it('takes GOVERNANCE mode and another retention from the configuration', () => {
    const governed = inspect(synthesize({ archive: { lockMode: 'GOVERNANCE', lockRetentionDays: 30 } }).template);
    const b = Object.values(governed.resources('AWS::S3::Bucket')).find((r) => r.Properties.ObjectLockEnabled)!;
    expect(b.Properties.ObjectLockConfiguration.Rule.DefaultRetention).toEqual({ Mode: 'GOVERNANCE', Days: 30 });
  });
});

describe('the processed bucket', () => {
  it('expires manifests, then their micro-batches a day later, and dead letters after their own, longer period', () => {
    const rules = buckets[processedId].Properties.LifecycleConfiguration.Rules as any[];
    const expiry = Object.fromEntries(rules.filter((r) => r.ExpirationInDays).map((r) => [r.Prefix, r.ExpirationInDays]));
    const p = DEFAULT_CONFIG.processed;
    expect(expiry).toEqual({ 'manifests/': p.expireAfterDays, 'microbatches/': p.expireAfterDays + 1, 'dead-letter/': p.deadLetterExpireAfterDays });
    expect(p.deadLetterExpireAfterDays).toBeGreaterThan(p.expireAfterDays);
    expect(buckets[processedId].Properties.ObjectLockEnabled).toBeUndefined();
  });
});
