/**
 * Immutable objects: put a key only if it does not exist yet. Every name in both buckets derives
 * from what it holds, so a retry that finds the object there has nothing left to write.
 */
import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

export async function putOnce(s3: S3Client, bucket: string, key: string, body: Uint8Array | string, contentType: string): Promise<void> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return;
  } catch (err) {
    if ((err as { name?: string }).name !== 'NotFound' && (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 404) throw err;
  }
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
}
