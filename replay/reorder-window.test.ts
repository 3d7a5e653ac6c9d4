import { describe, expect, it } from 'vitest';
import type { ReplayedEvent } from './reorder-window.ts';
import { keyed, ReorderWindow, type Keyed } from './reorder-window.ts';

const change = (lsn: number, pos = 0): Keyed =>
  keyed(
    {
      v: 1,
      kind: 'change',
      op: 'c',
      table: 'currency',
      key: { currency_id: lsn },
      before: null,
      after: { currency_id: lsn },
      source: { lsn: `0/${lsn.toString(16)}`, pos, xid: 1, commitTime: '2024-05-01T09:00:00Z' },
    } as ReplayedEvent,
    'k',
  );
const heartbeat = (lsn: number): Keyed =>
  keyed({ v: 1, kind: 'heartbeat', source: { lsn: `0/${lsn.toString(16)}`, pos: 0, xid: null, commitTime: '2024-05-01T09:00:00Z' } }, 'k');
const id = (k: Keyed) => `${k.event.source.lsn}:${k.event.source.pos}`;

/** Push every event, taking what the window lets go as it goes; then drain. */
function run(window: ReorderWindow, events: Keyed[]) {
  const out: string[] = [];
  const arrivals: string[] = [];
  let most = 0;
  for (const k of events) {
    arrivals.push(window.push(k));
    most = Math.max(most, window.size);
    for (let next = window.next(); next; next = window.next()) out.push(id(next));
  }
  for (let next = window.next(true); next; next = window.next(true)) out.push(id(next));
  return { out, arrivals, most };
}

describe('reorder window', () => {
  it('puts events out of order by less than its size back in stream order, holding at most its size plus one', () => {
    // each event at most 3 places from where it belongs
    const order = [2, 0, 1, 5, 3, 4, 8, 6, 7, 9].map((i) => change(0x100 + i));
    const { out, arrivals, most } = run(new ReorderWindow(3), order);
    expect(out).toEqual([...Array(10).keys()].map((i) => `0/${(0x100 + i).toString(16)}:0`));
    expect(arrivals.every((a) => a === 'held')).toBe(true);
    expect(most).toBeLessThanOrEqual(4);
  });

  it('orders by position inside a commit', () => {
    const { out } = run(new ReorderWindow(10), [change(0x100, 2), change(0x100, 0), change(0x100, 1)]);
    expect(out).toEqual(['0/100:0', '0/100:1', '0/100:2']);
  });

  it('drops copies, held or just released, and counts only change copies as duplicates', () => {
    const w = new ReorderWindow(2);
    const { out, arrivals } = run(w, [change(0x100), change(0x100), heartbeat(0x110), change(0x120), heartbeat(0x110), change(0x130), change(0x130)]);
    expect(out).toEqual(['0/100:0', '0/110:0', '0/120:0', '0/130:0']);
    expect(w.duplicates).toBe(2);
    expect(arrivals).toContain('held');
  });

  it('tells an event that comes after a later one was released as late, and does not hold it', () => {
    const w = new ReorderWindow(1);
    const { out, arrivals } = run(w, [change(0x200), change(0x300), change(0x400), change(0x100)]);
    expect(arrivals).toEqual(['held', 'held', 'held', 'late']);
    expect(out).toEqual(['0/200:0', '0/300:0', '0/400:0']);
  });

  it('needs room for one event at least', () => {
    expect(() => new ReorderWindow(0)).toThrow(RangeError);
  });
});
