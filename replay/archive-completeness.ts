/**
 * How far the archive is complete, from the heartbeats it holds. Each copy of a heartbeat names
 * the shard it was sent to and every shard open then (formats/change-event.ts); a shard's newest
 * heartbeat in the archive says everything written to it before that heartbeat is archived (a
 * shard's records are archived in order). So the archive is complete up to the lowest newest
 * heartbeat over the shards open at its newest heartbeat, as the loader's freshness is the lowest
 * watermark over the shards in play. The children of a reshard count from the first heartbeat
 * that names them open; a closed parent needs nothing more of its own: its children are archived
 * only after it (docs/replay.md says what this relies on), so a child's heartbeat in the archive
 * says the parent is all there.
 *
 * A shard named open with no heartbeat of its own in the archive (a merged child whose first
 * records are still in Firehose's buffer), or none within the gap threshold of the newest
 * heartbeat (its objects are missing), is what the archive lacks: `behind`, with since when.
 * Heartbeats archived before they named shards say nothing of shards: the newest one is then
 * the point, an upper bound, as replay took it before.
 *
 * Pure, and added to as objects are read, in any order: a catch-up pass goes on from the
 * heartbeats of the passes before it.
 */
import { compareEventIds, type HeartbeatEvent } from '../formats/change-event.ts';

/** A heartbeat read from the archive, and the object it was read from. */
export interface ArchivedHeartbeat {
  lsn: string;
  pos: number;
  commitTime: string;
  key: string;
}

/** A shard open at the newest heartbeat that the archive does not hold up to it. */
export interface ShardBehind {
  shard: string;
  /** Its own newest heartbeat: nothing it holds after this is known to be archived. Null: none at all. */
  newest: ArchivedHeartbeat | null;
  /** The first heartbeat that named it open (with none of its own, it may lack everything from about then). */
  openSince: ArchivedHeartbeat;
}

export interface Completeness {
  /**
   * 'shards': the point is the lowest newest heartbeat over the shards open at the newest one.
   * 'newest-heartbeat': the newest heartbeat names no shard (archived before heartbeats did): the
   * point is that heartbeat, an upper bound (another shard's objects may not be archived yet).
   */
  basis: 'shards' | 'newest-heartbeat';
  /** Everything committed before it is in the archive. Null: no heartbeat, or a shard open at the newest one has none. */
  point: ArchivedHeartbeat | null;
  /** Shards open at the newest heartbeat with no heartbeat of their own, or none within the gap threshold of it. */
  behind: ShardBehind[];
}

export class ArchiveHeartbeats {
  private newest: { heartbeat: ArchivedHeartbeat; named: boolean } | null = null;
  /** The shards the copies of the newest heartbeat name open. */
  private openAtNewest = new Set<string>();
  private readonly newestOf = new Map<string, ArchivedHeartbeat>();
  private readonly openSince = new Map<string, ArchivedHeartbeat>();

  /** One copy of a heartbeat, read from the object `key`. */
  seen(event: HeartbeatEvent, key: string): void {
    const heartbeat: ArchivedHeartbeat = { lsn: event.source.lsn, pos: event.source.pos, commitTime: event.source.commitTime, key };
    const order = this.newest ? compareEventIds(heartbeat, this.newest.heartbeat) : 1;
    if (order > 0) {
      this.newest = { heartbeat, named: false };
      this.openAtNewest = new Set();
    }
    if (event.shard === undefined || event.openShards === undefined) return;
    if (order >= 0) {
      this.newest!.named = true;
      for (const s of event.openShards) this.openAtNewest.add(s);
    }
    const newest = this.newestOf.get(event.shard);
    if (!newest || compareEventIds(heartbeat, newest) > 0) this.newestOf.set(event.shard, heartbeat);
    for (const s of event.openShards) {
      const since = this.openSince.get(s);
      if (!since || compareEventIds(heartbeat, since) < 0) this.openSince.set(s, heartbeat);
    }
  }

  /** `gapMs`: a shard whose newest heartbeat is further than this before the newest one is behind. */
  completeness(gapMs: number): Completeness {
    if (!this.newest?.named) return { basis: 'newest-heartbeat', point: this.newest?.heartbeat ?? null, behind: [] };
    const newestAt = Date.parse(this.newest.heartbeat.commitTime);
    let point: ArchivedHeartbeat | null = null;
    let lacking = false;
    const behind: ShardBehind[] = [];
    for (const shard of [...this.openAtNewest].sort()) {
      const newest = this.newestOf.get(shard) ?? null;
      if (!newest) lacking = true;
      else if (!point || compareEventIds(newest, point) < 0) point = newest;
      if (!newest || newestAt - Date.parse(newest.commitTime) > gapMs) behind.push({ shard, newest, openSince: this.openSince.get(shard)! });
    }
    return { basis: 'shards', point: lacking ? null : point, behind };
  }
}

/** One line saying what the archive lacks of a shard, and since when. */
export function formatBehind(b: ShardBehind): string {
  const since = (h: ArchivedHeartbeat) => `${h.lsn} committed ${h.commitTime} (in ${h.key})`;
  return b.newest
    ? `  ${b.shard}: nothing archived after its heartbeat ${since(b.newest)}`
    : `  ${b.shard}: no heartbeat of its own in the archive; named open since ${since(b.openSince)}`;
}
