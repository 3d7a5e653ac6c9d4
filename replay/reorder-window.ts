/**
 * The replay's reorder window: events go in as the archive holds them (delivery order) and come
 * out in stream order, (commit LSN, position), holding at most `capacity` events.
 *
 * Why order at all: the warehouse takes changes of different rows in any order, but a fact
 * version that reads the one before it (a delete carries the values it ends, a snapshot read
 * appends only when it differs, an unchanged TOAST value is kept from it) needs that version
 * loaded first. The stream keeps each row's changes in order (one shard per row); the archive
 * does too, but for an object Firehose delivered late, or again (a retry), which a window of a
 * few load batches puts back in place whatever the archive's size. One shard held far behind
 * another in the archive is disorder across rows only: harmless, and beyond any window.
 *
 * An event that arrives after the window has released an event later than it is *late*: it
 * can no longer go in its place. A copy of the last event released is recognised as a copy;
 * an older copy cannot be told from a late event without holding everything, so it counts as
 * late too.
 */
import type { ChangeEvent, HeartbeatEvent, RowsEndEvent } from '../formats/change-event.ts';

/** What the archive is replayed as: changes, and the truncates and snapshot ranges that end rows, in stream order. */
export type LoadedEvent = ChangeEvent | RowsEndEvent;
/** Pointers are resolved when read: only changes, heartbeats, truncates and snapshot ranges are kept. */
export type ReplayedEvent = LoadedEvent | HeartbeatEvent;

/** An event with its id parsed once: comparing LSN text would parse both on every comparison. */
export interface Keyed {
  hi: number;
  lo: number;
  pos: number;
  event: ReplayedEvent;
  /** The archive object it was read from. */
  objectKey: string;
}

export function keyed(event: ReplayedEvent, objectKey: string): Keyed {
  const slash = event.source.lsn.indexOf('/');
  return { hi: parseInt(event.source.lsn.slice(0, slash), 16), lo: parseInt(event.source.lsn.slice(slash + 1), 16), pos: event.source.pos, event, objectKey };
}

export const byEventId = (a: Keyed, b: Keyed) => a.hi - b.hi || a.lo - b.lo || a.pos - b.pos;

export type Arrival = 'held' | 'copy' | 'late';

export class ReorderWindow {
  /** Extra copies of change events dropped (heartbeats, truncates and snapshot ranges come once per shard: not counted). */
  duplicates = 0;
  /** Copies of every kind dropped. */
  copies = 0;
  private readonly heap: Keyed[] = [];
  /** The last event released: everything released is at or before it. */
  private released: Keyed | null = null;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`the reorder window must hold at least one event, got ${capacity}`);
  }

  get size(): number {
    return this.heap.length;
  }

  /** Take an event in; 'copy' and 'late' ones are not held (a late one is the caller's to load out of order or not). */
  push(k: Keyed): Arrival {
    if (this.released) {
      const c = byEventId(k, this.released);
      if (c === 0) {
        this.countCopy(k);
        return 'copy';
      }
      if (c < 0) return 'late';
    }
    const h = this.heap;
    let i = h.push(k) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (byEventId(h[parent], k) <= 0) break;
      h[i] = h[parent];
      i = parent;
    }
    h[i] = k;
    return 'held';
  }

  /** The next event in stream order once more than `capacity` are held, or while draining any; undefined otherwise. */
  next(draining = false): Keyed | undefined {
    while (this.heap.length > (draining ? 0 : this.capacity)) {
      const k = this.pop();
      if (this.released && byEventId(k, this.released) === 0) {
        this.countCopy(k);
        continue;
      }
      this.released = k;
      return k;
    }
    return undefined;
  }

  private countCopy(k: Keyed): void {
    this.copies++;
    if (k.event.kind === 'change') this.duplicates++;
  }

  private pop(): Keyed {
    const h = this.heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const c = l + 1 < h.length && byEventId(h[l + 1], h[l]) < 0 ? l + 1 : l;
        if (byEventId(last, h[c]) <= 0) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}
