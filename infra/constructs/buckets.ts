/**
 * The pipeline's buckets: the ingestion bucket (the raw archive Firehose writes: the system of
 * record replay rebuilds from), the processed bucket (Parquet micro-batches) and a bucket for
 * their server access logs. All private, encrypted, reachable over TLS only, and kept when the
 * stack is deleted. The data buckets are on SSE-KMS (the account's AWS-managed S3 key, with S3
 * Bucket Keys, which cut the KMS requests and their cost by about 99 %: no grant to add for
 * Firehose, the services or an operator's replay); the access-log bucket stays on SSE-S3, the
 * only encryption S3 server access logging delivers to.
 *
 * The archive is immutable in fact, not by convention: versioned, every object version under
 * S3 Object Lock for `archive.lockRetentionDays` (COMPLIANCE: no one, the root user included,
 * can delete it or shorten its retention), and a bucket policy that refuses deletes to every
 * principal, so not even a delete marker can hide an object from replay. Its lifecycle moves
 * objects, small ones included, to Standard-IA and then Glacier Instant Retrieval, which
 * GetObject reads at once: `totes replay` works on the oldest data without a restore.
 */
import { Construct } from 'constructs';
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { TotesConfig } from '../config.ts';
import { bucketObjectsWildcard, bucketPrefixWildcard } from './nag.ts';
import { OVERSIZE_PREFIX } from '../../formats/archive-layout.ts';

export const PRIVATE_ENCRYPTED: s3.BucketProps = {
  blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
  encryption: s3.BucketEncryption.S3_MANAGED,
  enforceSSL: true,
  objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
  removalPolicy: RemovalPolicy.RETAIN,
};
const PRIVATE_KMS: s3.BucketProps = { ...PRIVATE_ENCRYPTED, encryption: s3.BucketEncryption.KMS_MANAGED, bucketKeyEnabled: true };

/** What no principal may do to the archive: delete (a version, or the object behind a delete marker) or loosen its locks. */
export const ARCHIVE_DENIED_ACTIONS = [
  's3:DeleteObject',
  's3:DeleteObjectVersion',
  's3:PutObjectRetention',
  's3:PutObjectLegalHold',
  's3:BypassGovernanceRetention',
];

export class PipelineBuckets extends Construct {
  readonly ingestion: s3.Bucket;
  readonly processed: s3.Bucket;
  readonly accessLogs: s3.Bucket;

  constructor(scope: Construct, id: string, config: TotesConfig) {
    super(scope, id);
    const { archive, processed } = config;
    this.accessLogs = new s3.Bucket(this, 'AccessLogs', {
      ...PRIVATE_ENCRYPTED,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(365) }],
    });
    const retention = Duration.days(archive.lockRetentionDays);
    this.ingestion = new s3.Bucket(this, 'Ingestion', {
      ...PRIVATE_KMS,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'ingestion/',
      versioned: true,
      objectLockEnabled: true,
      objectLockDefaultRetention:
        archive.lockMode === 'COMPLIANCE' ? s3.ObjectLockRetention.compliance(retention) : s3.ObjectLockRetention.governance(retention),
      // Archive objects are often under 128 KB (a minute of a quiet source): the S3 default would leave them in Standard.
      transitionDefaultMinimumObjectSize: s3.TransitionDefaultMinimumObjectSize.VARIES_BY_STORAGE_CLASS,
      lifecycleRules: [
        {
          id: 'archive-to-colder-storage',
          transitions: [
            { storageClass: s3.StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(archive.infrequentAccessAfterDays) },
            { storageClass: s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, transitionAfter: Duration.days(archive.glacierAfterDays) },
          ],
          abortIncompleteMultipartUploadAfter: Duration.days(7),
        },
      ],
    });
    this.ingestion.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'ArchiveIsImmutable',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ARCHIVE_DENIED_ACTIONS,
        resources: [this.ingestion.arnForObjects('*')],
      }),
    );
    const expire = (id: string, prefix: string, days: number): s3.LifecycleRule => ({ id, prefix, expiration: Duration.days(days) });
    this.processed = new s3.Bucket(this, 'Processed', {
      ...PRIVATE_KMS,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'processed/',
      lifecycleRules: [
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(7) },
        // A batch whose manifest expires first is never half seen: the loader lists manifests, then reads their tables.
        expire('expire-manifests', 'manifests/', processed.expireAfterDays),
        expire('expire-microbatches', 'microbatches/', processed.expireAfterDays + 1),
        expire('expire-dead-letters', 'dead-letter/', processed.deadLetterExpireAfterDays),
      ],
    });
  }
}

/**
 * Exactly the S3 calls stores/microbatch-store.ts makes: ListObjectsV2 (s3:ListBucket, which
 * also makes HEAD of a missing key answer 404 rather than 403), HEAD and GET (s3:GetObject) and,
 * for the processor, PUT (s3:PutObject). Nothing is ever deleted or overwritten.
 */
export function grantMicroBatchAccess(scope: Construct, bucket: s3.Bucket, grantee: iam.IGrantable, access: 'read' | 'read-write'): void {
  iam.Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [bucket.bucketArn] });
  iam.Grant.addToPrincipal({
    grantee,
    actions: access === 'read' ? ['s3:GetObject'] : ['s3:GetObject', 's3:PutObject'],
    resourceArns: [bucket.arnForObjects('*')],
  });
  Validations.of(scope).acknowledge({
    id: bucketObjectsWildcard(bucket),
    reason: 'Micro-batch object keys are generated per batch (shard and sequence numbers); the statement names the bucket and only the object actions used.',
  });
}

/**
 * Changes over Kinesis's 1 MiB record limit travel by claim check (stores/oversize-store.ts):
 * capture writes them under oversize/ in the ingestion bucket (HEAD first, so it also needs
 * s3:ListBucket for a missing key to answer 404), the processor reads them back.
 */
export function grantOversizeAccess(scope: Construct, bucket: s3.Bucket, grantee: iam.IGrantable, access: 'read' | 'write'): void {
  if (access === 'write') iam.Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [bucket.bucketArn] });
  iam.Grant.addToPrincipal({
    grantee,
    actions: access === 'read' ? ['s3:GetObject'] : ['s3:GetObject', 's3:PutObject'],
    resourceArns: [bucket.arnForObjects(`${OVERSIZE_PREFIX}*`)],
  });
  Validations.of(scope).acknowledge({
    id: bucketPrefixWildcard(bucket, OVERSIZE_PREFIX),
    reason: "Oversize change objects are named by the change's (lsn, pos); the statement is limited to the oversize/ prefix and the object actions used.",
  });
}
