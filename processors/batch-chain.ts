/**
 * Which earlier batch a micro-batch follows on its shard, asked of the stream while its records
 * are fresh and written into the manifest (`follows`), so the loader need not ask it later: a
 * backlog then loads at the loader's speed rather than at the stream's read budget, and its
 * batches still prove contiguous once the stream has aged their records out.
 *
 * The processor remembers the last batch it wrote on each shard. An event source mapping runs a
 * shard's batches one after another, usually in the same container; where this one has not seen
 * the shard (a cold start), or the stream does not answer, the manifest says nothing and the
 * loader asks the stream itself.
 */
import { compareSequences } from '../formats/manifest.ts';
import { log } from '../lib/log.ts';
import type { ShardStream } from '../stores/shard-stream.ts';

export class BatchChain {
  private readonly lastWritten = new Map<string, string>();

  constructor(private readonly stream: ShardStream) {}

  /** The last record of the batch this one (starting at `first`) follows, when the stream says so. */
  async follows(shard: string, first: string): Promise<string | null> {
    const previous = this.lastWritten.get(shard);
    if (!previous || compareSequences(previous, first) >= 0) return null;
    try {
      const next = await this.stream.next(shard, previous);
      return next.kind === 'record' && next.sequence === first ? previous : null;
    } catch (err) {
      log.warn({ err: (err as Error).message, shard }, 'could not ask the stream which batch this one follows; the loader will');
      return null;
    }
  }

  /** A batch's manifest is written. */
  wrote(shard: string, last: string): void {
    const previous = this.lastWritten.get(shard);
    if (!previous || compareSequences(last, previous) > 0) this.lastWritten.set(shard, last);
  }
}
