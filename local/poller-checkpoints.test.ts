/** A poller's checkpoint against s3rver: one that is not a checkpoint is read as none (the shard read again from its start), never used as a position. */
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Client } from '../lib/aws.ts';
import { PollerCheckpoints } from './poller-checkpoints.ts';
import { freePort, startS3, type LocalS3 } from './servers.ts';

describe('PollerCheckpoints', () => {
  let s3rver: LocalS3;
  let s3: S3Client;
  let checkpoints: PollerCheckpoints;
  const shard = { shardId: 'shardId-000000000000', startingSequence: '4968' };
  beforeAll(async () => {
    s3rver = await startS3({ port: await freePort(), buckets: ['processed'] });
    s3 = s3Client({ s3Endpoint: s3rver.endpoint });
    checkpoints = new PollerCheckpoints(s3, 'processed', 'processor', 'changes');
  });
  afterAll(async () => {
    s3?.destroy();
    await s3rver?.stop();
  });

  it('reads back what it wrote', async () => {
    expect(await checkpoints.read(shard)).toBeNull();
    await checkpoints.write(shard, { after: '4970' });
    expect(await checkpoints.read(shard)).toEqual({ after: '4970' });
    await checkpoints.write(shard, { ended: true });
    expect(await checkpoints.read(shard)).toEqual({ ended: true });
  });

  it.each([
    ['cut short', '{"after":"49'],
    ['a position as a number', '{"after":4970}'],
    ['an ended that is not true', '{"ended":false}'],
    ['neither', '{"at":"4970"}'],
  ])('reads a checkpoint %s as none', async (_, body) => {
    await s3.send(new PutObjectCommand({ Bucket: 'processed', Key: checkpoints.key(shard), Body: body }));
    expect(await checkpoints.read(shard)).toBeNull();
  });
});
