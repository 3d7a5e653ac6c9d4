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

export class SubjectKeyStore extends Construct {
  readonly key: kms.Key;
  readonly bucket: s3.Bucket;

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
  }

  /** The environment that names the store to a service (stores/key-wrappers.ts subjectKeysFrom). */
  get environment(): Record<string, string> {
    return { [ENV.keysBucket]: this.bucket.bucketName, [ENV.kmsKeyId]: this.key.keyArn };
  }

  /**
   * Exactly the calls stores/subject-keys.ts makes. Both read a subject's object (s3:GetObject,
   * and s3:ListBucket so a missing one answers 404, not 403) and unwrap its key (kms:Decrypt, which
   * SSE-KMS needs too). Capture also creates keys: it wraps them (kms:Encrypt) and puts the object
   * (s3:PutObject; kms:GenerateDataKey for SSE-KMS). No service deletes or overwrites a key: only
   * an operator's `totes forget` does.
   */
  grant(scope: Construct, grantee: iam.IGrantable, access: 'create' | 'read'): void {
    const create = access === 'create';
    iam.Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn] });
    iam.Grant.addToPrincipal({
      grantee,
      actions: create ? ['s3:GetObject', 's3:PutObject'] : ['s3:GetObject'],
      resourceArns: [this.bucket.arnForObjects('*')],
    });
    iam.Grant.addToPrincipal({
      grantee,
      actions: create ? ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'],
      resourceArns: [this.key.keyArn],
    });
    Validations.of(scope).acknowledge({
      id: bucketObjectsWildcard(this.bucket),
      reason:
        "A subject's key object is named by its kind and id, data not nameable in a policy; the statement names the key bucket and only the object actions used.",
    });
  }
}
