/**
 * The processed bucket. A micro-batch is the output of one processor invocation on one shard:
 *   microbatches/<shard>/<last-seq>-<first-seq>/<load table>.parquet   one object per table
 *   manifests/<shard>/<last-seq>-<first-seq>.json                      written last: the batch exists once this does
 *   dead-letter/<shard>/<seq>.json                                    records that could not be used, with the reason
 * Names derive from the Kinesis sequence numbers, zero-padded so they sort in stream order: a
 * retried batch writes the same names, and an object that exists is never written again.
 * Manifests are named by their LAST record first, so the loader can list every manifest that
 * reaches past the records it has loaded, however the stream was cut into batches (a re-cut
 * batch that starts before the loaded records and runs past them is listed too).
 */
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { LoadTableName } from '../formats/load-tables.ts';
import { decodeManifest, padSequence, type DeadLetter, type Manifest } from '../formats/manifest.ts';
import { putOnce } from './put-once.ts';

/** Where dead letters are kept: `dead-letter/<shard>/<seq>.json`. */
export const DEAD_LETTER_PREFIX = 'dead-letter/';

export class MicroBatchStore {
  constructor(
    readonly s3: S3Client,
    readonly bucket: string,
  ) {}

  static batchId(shard: string, firstSequence: string, lastSequence: string): string {
    return `${shard}/${padSequence(lastSequence)}-${padSequence(firstSequence)}`;
  }

  tableKey(batchId: string, table: LoadTableName): string {
    return `microbatches/${batchId}/${table}.parquet`;
  }

  manifestKey(batchId: string): string {
    return `manifests/${batchId}.json`;
  }

  /** Put unless it already exists: objects are immutable and a retry writes identical bytes. */
  putOnce(key: string, body: Uint8Array | string, contentType: string): Promise<void> {
    return putOnce(this.s3, this.bucket, key, body, contentType);
  }

  async writeManifest(m: Manifest): Promise<void> {
    await this.putOnce(this.manifestKey(m.batchId), JSON.stringify(m), 'application/json');
  }

  async writeDeadLetter(d: DeadLetter): Promise<void> {
    await this.putOnce(`${DEAD_LETTER_PREFIX}${d.shard}/${padSequence(d.sequenceNumber)}.json`, JSON.stringify(d), 'application/json');
  }

  async listShards(): Promise<string[]> {
    const out = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: 'manifests/', Delimiter: '/' }));
    return (out.CommonPrefixes ?? []).map((p) => p.Prefix!.slice('manifests/'.length, -1));
  }

  /** Manifest keys of one shard whose last record is after sequence number `after`, by last record. */
  async listManifests(shard: string, after?: string | null, max = 1000): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    // "<last>-<first>.json" sorts below "<last>." ('-' < '.'): a batch ending at `after` is left out
    const startAfter = after ? `manifests/${shard}/${padSequence(after)}.` : undefined;
    do {
      const out = await this.s3.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: `manifests/${shard}/`,
          ContinuationToken: token,
          ...(startAfter && !token ? { StartAfter: startAfter } : {}),
        }),
      );
      for (const o of out.Contents ?? []) keys.push(o.Key!);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token && keys.length < max);
    return keys.sort().slice(0, max);
  }

  async getBytes(key: string): Promise<Uint8Array> {
    const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    return out.Body!.transformToByteArray();
  }

  /** The manifest under `key`, checked: one the loader cannot read stops it, naming the field, rather than being misread. */
  async getManifest(key: string): Promise<Manifest> {
    return decodeManifest(Buffer.from(await this.getBytes(key)).toString('utf8'), key);
  }
}
