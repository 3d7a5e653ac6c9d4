/**
 * What the processor and the loader ask the change stream itself: which shards exist (and which
 * they split or merged from), and which record follows a given one on a shard. Kinesis sequence
 * numbers are increasing but not contiguous, so "does batch B start right after batch A ends?"
 * cannot be read off the numbers; the stream answers it exactly: the record after A's last, read
 * with GetRecords (limit 1) from an AFTER_SEQUENCE_NUMBER iterator. Once A's last record is older
 * than the stream's retention it cannot: the answer is then `trimmed`.
 */
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { compareSequences } from '../formats/manifest.ts';
import { sleep } from '../lib/retry.ts';

export interface ShardInfo {
  id: string;
  /** The shards this one was split or merged from (a reshard). */
  parents: string[];
  /** Closed by a reshard: it takes no more records. */
  closed: boolean;
}

/**
 * The record after a position on a shard: there is one, there is none yet, the shard ended
 * there, or the stream no longer holds the records after it (aged out past its retention; the
 * oldest record it still holds, null when it holds none).
 */
export type NextRecord =
  | { kind: 'record'; sequence: string; arrivedAt: Date | null }
  | { kind: 'none' }
  | { kind: 'end' }
  | { kind: 'trimmed'; oldest: string | null };

/** The stream calls the questions need (a KinesisClient, or a test's wrapper of one). */
export type StreamClient = Pick<KinesisClient, 'send'>;

/** How many empty pages to follow while the stream says records lie further on. */
const EMPTY_PAGES = 5;

export class ShardStream {
  /** When each shard may be asked next. */
  private readonly nextAskAt = new Map<string, number>();

  /**
   * `minAskIntervalMs`: the least time between two questions about one shard. A shard serves 5
   * GetRecords a second to all its readers (the event source mapping and Firehose read it too),
   * so in AWS the loader asks at most a few times a second per shard; emulators need no pause.
   */
  constructor(
    private readonly client: StreamClient,
    readonly streamName: string,
    private readonly minAskIntervalMs = 0,
  ) {}

  async shards(): Promise<ShardInfo[]> {
    const shards: ShardInfo[] = [];
    let token: string | undefined;
    do {
      const out = await this.client.send(new ListShardsCommand(token ? { NextToken: token } : { StreamName: this.streamName }));
      for (const s of out.Shards ?? []) {
        shards.push({
          id: s.ShardId!,
          parents: [s.ParentShardId, s.AdjacentParentShardId].filter((p): p is string => !!p),
          closed: !!s.SequenceNumberRange?.EndingSequenceNumber,
        });
      }
      token = out.NextToken;
    } while (token);
    return shards;
  }

  /** The record after `after` on `shard` (after null: the shard's first record still in the stream). */
  async next(shard: string, after: string | null): Promise<NextRecord> {
    let first: NextRecord | 'behind';
    try {
      first = await this.read(shard, after);
    } catch (err) {
      // Kinesis may refuse an iterator after a record it no longer holds
      if (after === null || (err as Error).name !== 'InvalidArgumentException') throw err;
      first = 'behind';
    }
    if (first !== 'behind') return first;
    if (after === null) return { kind: 'none' };
    // empty pages far behind the tip, or a refused iterator: has the record after `after` aged out?
    const oldest = await this.read(shard, null);
    if (oldest === 'behind' || oldest.kind === 'none') return { kind: 'trimmed', oldest: null };
    if (oldest.kind === 'record' && compareSequences(oldest.sequence, after) > 0) return { kind: 'trimmed', oldest: oldest.sequence };
    return { kind: 'none' };
  }

  /** One question: the first record after `after`, following empty pages a little; 'behind' when they go on. */
  private async read(shard: string, after: string | null): Promise<NextRecord | 'behind'> {
    await this.paced(shard);
    const out = await this.client.send(
      new GetShardIteratorCommand({
        StreamName: this.streamName,
        ShardId: shard,
        ...(after ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: after } : { ShardIteratorType: 'TRIM_HORIZON' }),
      }),
    );
    let iterator = out.ShardIterator!;
    for (let page = 1; ; page++) {
      const got = await this.client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1 }));
      const r = got.Records?.[0];
      if (r) return { kind: 'record', sequence: r.SequenceNumber!, arrivedAt: r.ApproximateArrivalTimestamp ?? null };
      // a closed shard read to its end has no next iterator
      if (!got.NextShardIterator) return { kind: 'end' };
      // Kinesis may answer an empty page before records further on; at the tip it is 0 behind
      if (!got.MillisBehindLatest) return { kind: 'none' };
      if (page >= EMPTY_PAGES) return 'behind';
      iterator = got.NextShardIterator;
    }
  }

  /** Wait for this shard's turn: at most one question per `minAskIntervalMs`. */
  private async paced(shard: string): Promise<void> {
    if (this.minAskIntervalMs <= 0) return;
    const at = Math.max(Date.now(), this.nextAskAt.get(shard) ?? 0);
    this.nextAskAt.set(shard, at + this.minAskIntervalMs);
    if (at > Date.now()) await sleep(at - Date.now());
  }
}
