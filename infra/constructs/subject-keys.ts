/**
 * The personal-data key store on AWS (stores/subject-keys.ts): a bucket of its own holding one
 * object per data subject, the subject's data key wrapped by a customer-managed KMS key of the
 * stack (rotated yearly, kept when the stack is deleted). The same KMS key encrypts the bucket
 * (SSE-KMS with S3 Bucket Keys), so reading a subject's object at all takes kms:Decrypt on it.
 *
 * Unlike the archive, the bucket has NO Object Lock and NO versioning, on purpose: erasing a
 * person (`totes forget`) overwrites their object with a tombstone, and that must destroy the
 * wrapped key for good. A lock would refuse it; versioning would keep the old version, and with
 * it every sealed value of that person in the locked archive readable. It is kept when the stack
 * is deleted (losing it would make every sealed value unreadable), private, TLS only, with
 * server access logs beside the other buckets'.
 */
import { Construct } from 'constructs';
import { Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { ENV } from '../../lib/config.ts';
import { PRIVATE_ENCRYPTED } from './buckets.ts';
import { bucketObjectsWildcard } from './nag.ts';

/** Capture creates keys, the loader and replay read them, `totes forget` erases them. */
type KeyStoreAccess = 'create' | 'read' | 'erase';

export class SubjectKeyStore extends Construct {
  readonly key: kms.Key;
  readonly bucket: s3.Bucket;
  /** What `totes forget` needs of the key store, for the operator to attach to the role that runs it. */
  readonly erasurePolicy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: { accessLogs: s3.IBucket }) {
    super(scope, id);
    this.key = new kms.Key(this, 'Key', { description: 'totes-cdc personal-data keys', enableKeyRotation: true });
    this.bucket = new s3.Bucket(this, 'Bucket', {
      ...PRIVATE_ENCRYPTED,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.key,
      bucketKeyEnabled: true,
      serverAccessLogsBucket: props.accessLogs,
      serverAccessLogsPrefix: 'subject-keys/',
      versioned: false,
      objectLockEnabled: false,
    });
    this.erasurePolicy = new iam.ManagedPolicy(this, 'ErasurePolicy', {
      description: 'totes forget: destroy a data subject key in the personal-data key store',
      statements: this.statements('erase'),
    });
    this.acknowledgeObjectsWildcard(this.erasurePolicy);
  }

  /** The environment that names the store to a service (stores/key-wrappers.ts subjectKeysFrom). */
  get environment(): Record<string, string> {
    return { [ENV.keysBucket]: this.bucket.bucketName, [ENV.kmsKeyId]: this.key.keyArn };
  }

  /**
   * Exactly the calls stores/subject-keys.ts makes. Every user reads a subject's object
   * (s3:GetObject, and s3:ListBucket so a missing one answers 404, not 403) and unwraps its key
   * (kms:Decrypt, which SSE-KMS needs too). Capture also creates keys: it wraps them
   * (kms:Encrypt) and puts the object (s3:PutObject; kms:GenerateDataKey for SSE-KMS). An erasure
   * puts the tombstone over the key, which needs no delete permission; no service may erase.
   */
  private statements(access: KeyStoreAccess): iam.PolicyStatement[] {
    const writes = access !== 'read';
    return [
      new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }),
      new iam.PolicyStatement({ actions: writes ? ['s3:GetObject', 's3:PutObject'] : ['s3:GetObject'], resources: [this.bucket.arnForObjects('*')] }),
      new iam.PolicyStatement({
        actions: ['kms:Decrypt', ...(access === 'create' ? ['kms:Encrypt'] : []), ...(writes ? ['kms:GenerateDataKey'] : [])],
        resources: [this.key.keyArn],
      }),
    ];
  }

  grant(scope: Construct, grantee: iam.IGrantable, access: Exclude<KeyStoreAccess, 'erase'>): void {
    for (const statement of this.statements(access)) grantee.grantPrincipal.addToPrincipalPolicy(statement);
    this.acknowledgeObjectsWildcard(scope);
  }

  private acknowledgeObjectsWildcard(scope: Construct): void {
    Validations.of(scope).acknowledge({
      id: bucketObjectsWildcard(this.bucket),
      reason:
        "A subject's key object is named by its kind and id, data not nameable in a policy; the statement names the key bucket and only the object actions used.",
    });
  }
}
