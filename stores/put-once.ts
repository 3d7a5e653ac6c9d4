/**
 * Immutable objects: put a key only if it does not exist yet. Every name in both buckets derives
 * from what it holds, so a retry that finds the object there has nothing left to write. An
 * object of another size under the name is one a killed writer left half-written (S3 stores a
 * PUT whole or not at all; the s3rver emulator stores what arrived): it is written again.
 */
import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { log } from '../lib/log.ts';

export async function putOnce(s3: S3Client, bucket: string, key: string, body: Uint8Array | string, contentType: string): Promise<void> {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    if (head.ContentLength === size) return;
    log.warn({ bucket, key, found: head.ContentLength, size }, 'object of another size under an immutable name (a write cut short): writing it again');
  } catch (err) {
    if ((err as { name?: string }).name !== 'NotFound' && (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 404) throw err;
  }
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
}
