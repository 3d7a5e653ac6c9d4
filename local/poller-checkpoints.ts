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
import * as v from '@badrap/valita';
import { check } from '../formats/schema.ts';
import { log } from '../lib/log.ts';

/** Resume after this record, or the shard was read to its end. */
const checkpoint = v.union(v.object({ after: v.string().assert((s) => /^\d+$/.test(s), 'must be a sequence number') }), v.object({ ended: v.literal(true) }));
export type Checkpoint = v.Infer<typeof checkpoint>;

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

  /**
   * The shard's checkpoint; null when there is none, or when it is unreadable (a killed writer cut
   * it short, or it is not a checkpoint): reading again from the start loses nothing.
   */
  async read(shard: ShardIdentity): Promise<Checkpoint | null> {
    let text: string;
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(shard) }));
      text = await out.Body!.transformToString();
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return null;
      throw err;
    }
    try {
      return check(checkpoint, JSON.parse(text), (problem) => new Error(problem), 'strict');
    } catch (err) {
      log.warn({ key: this.key(shard), text: text.slice(0, 200), problem: (err as Error).message }, 'checkpoint unreadable: reading the shard from its start');
      return null;
    }
  }

  async write(shard: ShardIdentity, checkpoint: Checkpoint): Promise<void> {
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(shard), Body: JSON.stringify(checkpoint), ContentType: 'application/json' }));
  }
}
