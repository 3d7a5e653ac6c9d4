/**
 * Where a local poller keeps its progress, as an event source mapping keeps its checkpoint: one
 * small JSON object per consumer and shard in an S3 bucket the consumer writes to anyway (the
 * processor's in the processed bucket, the archiver's in the ingestion bucket), so it survives
 * the consumer's process (compose keeps the bucket on a volume; `npm start` starts fresh).
 *   checkpoints/<consumer>/<stream>/<shard>-<shard's first sequence number>.json
 * The shard's first sequence number is in the name so that a stream created again under the same
 * name (whose shard ids repeat) does not resume from another stream's positions.
 */
import { GetObjectCommand, NoSuchKey, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

/** Resume after this record, or the shard was read to its end. */
export type Checkpoint = { after: string } | { ended: true };

export interface ShardIdentity {
  shardId: string;
  startingSequence: string;
}

export class PollerCheckpoints {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly consumer: string,
    private readonly streamName: string,
  ) {}

  key(shard: ShardIdentity): string {
    return `checkpoints/${this.consumer}/${this.streamName}/${shard.shardId}-${shard.startingSequence}.json`;
  }

  async read(shard: ShardIdentity): Promise<Checkpoint | null> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(shard) }));
      return JSON.parse(await out.Body!.transformToString()) as Checkpoint;
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return null;
      throw err;
    }
  }

  async write(shard: ShardIdentity, checkpoint: Checkpoint): Promise<void> {
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(shard), Body: JSON.stringify(checkpoint), ContentType: 'application/json' }));
  }
}
