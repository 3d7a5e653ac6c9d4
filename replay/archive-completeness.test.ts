import { describe, expect, it } from 'vitest';
import type { HeartbeatEvent } from '../formats/change-event.ts';
import { ArchiveHeartbeats } from './archive-completeness.ts';

const copy = (lsn: string, second: number, shard?: string, openShards?: string[]): HeartbeatEvent => ({
  v: 1,
  kind: 'heartbeat',
  ...(shard ? { shard, openShards } : {}),
  source: { lsn, pos: 0, xid: 1, commitTime: `2024-05-01T09:00:${String(second).padStart(2, '0')}Z` },
});
const read = (...copies: HeartbeatEvent[]) => {
  const seen = new ArchiveHeartbeats();
  for (const [i, c] of copies.entries()) seen.seen(c, `object-${i}`);
  return seen.completeness(60_000);
};
const pointOf = (...copies: HeartbeatEvent[]) => read(...copies).point?.lsn ?? null;

describe('ArchiveHeartbeats', () => {
  it('is complete up to the lowest newest heartbeat over the shards open at the newest one, in whatever order the copies come', () => {
    const open = ['a', 'b'];
    expect(pointOf(copy('0/300', 3, 'a', open), copy('0/100', 1, 'b', open), copy('0/200', 2, 'a', open))).toBe('0/100');
    expect(pointOf(copy('0/100', 1, 'b', open), copy('0/300', 3, 'a', open), copy('0/300', 3, 'b', open))).toBe('0/300');
  });

  it('counts a closed parent for nothing once the newest heartbeat names its children', () => {
    // p split into l and r; p's last heartbeat is old, the children are archived up to 0/500
    const children = ['l', 'r'];
    expect(pointOf(copy('0/100', 1, 'p', ['p']), copy('0/500', 5, 'l', children), copy('0/500', 5, 'r', children))).toBe('0/500');
  });

  it('takes every shard any copy of the newest heartbeat names open: a copy named from a stale shard list adds to them', () => {
    // sent to p just as p split: it landed on l, and was sent again to l and r; r's copy is not archived yet
    const stale = copy('0/500', 5, 'p', ['p']);
    const result = read(copy('0/400', 4, 'p', ['p']), stale, copy('0/500', 5, 'l', ['l', 'r']));
    expect(result.point).toBeNull();
    expect(result.behind).toEqual([{ shard: 'r', newest: null, openSince: { lsn: '0/500', pos: 0, commitTime: '2024-05-01T09:00:05Z', key: 'object-2' } }]);
    expect(pointOf(copy('0/400', 4, 'p', ['p']), stale, copy('0/500', 5, 'l', ['l', 'r']), copy('0/500', 5, 'r', ['l', 'r']))).toBe('0/500');
  });

  it('takes the newest heartbeat as an upper bound when it names no shard (an archive from before heartbeats did)', () => {
    expect(read(copy('0/100', 1, 'a', ['a', 'b']), copy('0/200', 2))).toMatchObject({ basis: 'newest-heartbeat', point: { lsn: '0/200' }, behind: [] });
    expect(read()).toEqual({ basis: 'newest-heartbeat', point: null, behind: [] });
  });
});
