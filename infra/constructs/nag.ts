/** The cdk-nag finding ids this stack acknowledges where they depend on generated names. */
import { Stack } from 'aws-cdk-lib';
import type * as s3 from 'aws-cdk-lib/aws-s3';

/** AwsSolutions-IAM5 for "every object in this bucket": object keys are data, not nameable in a policy. */
export function bucketObjectsWildcard(bucket: s3.Bucket): string {
  return `AwsSolutions-IAM5[Resource::<${Stack.of(bucket).getLogicalId(bucket.node.defaultChild as s3.CfnBucket)}.Arn>/*]`;
}

/** AwsSolutions-IAM5 for the objects under one prefix of a bucket. */
export function bucketPrefixWildcard(bucket: s3.Bucket, prefix: string): string {
  return `AwsSolutions-IAM5[Resource::<${Stack.of(bucket).getLogicalId(bucket.node.defaultChild as s3.CfnBucket)}.Arn>/${prefix}*]`;
}
