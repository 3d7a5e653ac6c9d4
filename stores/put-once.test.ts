/** Immutable puts against s3rver: an existing object is left alone, one a killed writer cut short is written again. */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Client } from '../lib/aws.ts';
import { startLocalAws, type LocalAws } from '../test/harness.ts';
import { putOnce } from './put-once.ts';

describe('putOnce', () => {
  let aws: LocalAws;
  beforeAll(async () => {
    aws = await startLocalAws({ stream: 'unused', shards: 1, buckets: ['once'] });
  });
  afterAll(async () => {
    await aws?.stop();
  });

  it('leaves a whole object alone and writes a half-written one again', async () => {
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    const read = async (key: string) => (await s3.send(new GetObjectCommand({ Bucket: 'once', Key: key }))).Body!.transformToString();
    await putOnce(s3, 'once', 'a', 'first', 'text/plain');
    await putOnce(s3, 'once', 'a', 'other', 'text/plain');
    expect(await read('a')).toBe('first');
    // what a writer killed mid-upload leaves in s3rver
    await s3.send(new PutObjectCommand({ Bucket: 'once', Key: 'b', Body: '{"batchId":"shard/12', ContentType: 'application/json' }));
    await putOnce(s3, 'once', 'b', '{"batchId":"shard/123-1"}', 'application/json');
    expect(await read('b')).toBe('{"batchId":"shard/123-1"}');
    s3.destroy();
  });
});
