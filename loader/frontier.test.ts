/**
 * The frontier planner over every shape an event source mapping cuts a shard into: adjacent
 * batches, retries from the same record, bisected halves, re-cuts that overlap anyhow, batches
 * that arrive out of order, a skipped range, a trimmed start, and reshards. The stream is a list
 * of sequence numbers per shard (the question the planner asks of Kinesis, answered from it).
 */
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../formats/manifest.ts';
import { loadOrder, planShards, type PendingBatch, type ShardState } from './frontier.ts';
import type { NextRecord, ShardInfo } from '../stores/shard-stream.ts';

/** Sequence numbers with holes between them, as Kinesis gives them. */
const seq = (i: number) => String(1_000 + i * 7);

function batch(shard: string, first: number, last: number, maxCommitTime: string | null = null): PendingBatch {
  const manifest = {
    batchId: `${shard}/${first}-${last}`,
    shard,
    firstSequence: seq(first),
    lastSequence: seq(last),
    heartbeat: null,
    maxCommitTime,
  } as Manifest;
  return { key: manifest.batchId, manifest };
}

/** Answers "the record after x" from records 0..n-1 of each shard (closed shards end there). */
function stream(records: Record<string, { n: number; closed?: boolean; from?: number }>) {
  const asked: string[] = [];
  const next = async (shard: string, after: string | null): Promise<NextRecord> => {
    asked.push(`${shard}:${after}`);
    const { n, closed, from = 0 } = records[shard];
    const i = after === null ? from : (Number(after) - 1_000) / 7 + 1;
    if (i < n) return { kind: 'record', sequence: seq(i), arrivedAt: new Date(0) };
    return closed ? { kind: 'end' } : { kind: 'none' };
  };
  return { next, asked };
}

const shard = (id: string, parents: string[] = [], closed = false): ShardInfo => ({ id, parents, closed });
const plan = (shards: ShardInfo[], pending: PendingBatch[], next: ReturnType<typeof stream>['next'], states: Record<string, ShardState> = {}) =>
  planShards(shards, new Map(Object.entries(states)), new Map(shards.map((s) => [s.id, pending.filter((b) => b.manifest.shard === s.id)])), next);
const loaded = (p: Awaited<ReturnType<typeof plan>>[number]) => p.batches.map((b) => b.key);

describe('frontier', () => {
  it('follows adjacent batches by asking the stream which record comes next', async () => {
    const s = stream({ a: { n: 9 } });
    const [p] = await plan([shard('a')], [batch('a', 3, 5), batch('a', 0, 2), batch('a', 6, 8)], s.next);
    expect(loaded(p)).toEqual(['a/0-2', 'a/3-5', 'a/6-8']);
    expect(p).toMatchObject({ from: null, to: seq(8), gap: null, ended: false });
  });

  it('needs no question where batches overlap: retries, bisected halves, a re-cut from the start', async () => {
    const s = stream({ a: { n: 12 } });
    const pending = [
      batch('a', 0, 5), // timed out after its manifest...
      batch('a', 0, 2), // ...and was bisected
      batch('a', 3, 5),
      batch('a', 4, 9), // a retry from a failed record that ran further
      batch('a', 0, 7), // a mapping re-created at TRIM_HORIZON, cut differently
      batch('a', 8, 11),
    ];
    const [p] = await plan([shard('a')], pending, s.next);
    expect(loaded(p)).toEqual(['a/0-7', 'a/4-9', 'a/8-11']);
    expect(p.to).toBe(seq(11));
    expect(s.asked).toEqual(['a:null']);
  });

  it('resumes from a stored frontier, leaving out batches it already passed', async () => {
    const s = stream({ a: { n: 9 } });
    const [p] = await plan([shard('a')], [batch('a', 0, 2), batch('a', 2, 4), batch('a', 5, 8)], s.next, { a: { frontier: seq(2), ended: false } });
    expect(loaded(p)).toEqual(['a/2-4', 'a/5-8']);
  });

  it('stops at a record no batch holds while later batches exist: a gap, held until filled', async () => {
    const s = stream({ a: { n: 10 } });
    const [p] = await plan([shard('a')], [batch('a', 0, 2), batch('a', 6, 9)], s.next);
    expect(loaded(p)).toEqual(['a/0-2']);
    expect(p.gap).toEqual({ after: seq(2), missing: seq(3), missingArrivedAt: new Date(0), resumesAt: seq(6) });
    const [filled] = await plan([shard('a')], [batch('a', 3, 5), batch('a', 6, 9)], s.next, { a: { frontier: seq(2), ended: false } });
    expect(loaded(filled)).toEqual(['a/3-5', 'a/6-9']);
    expect(filled.gap).toBeNull();
  });

  it('calls nothing a gap while the stream does not show the records yet', async () => {
    const s = stream({ a: { n: 3 } });
    const [p] = await plan([shard('a')], [batch('a', 0, 2), batch('a', 4, 5)], s.next);
    expect(loaded(p)).toEqual(['a/0-2']);
    expect(p.gap).toBeNull();
  });

  it('starts at the oldest record the stream still holds, from a batch that began before it', async () => {
    const s = stream({ a: { n: 9, from: 4 } });
    const [p] = await plan([shard('a')], [batch('a', 0, 3), batch('a', 2, 5), batch('a', 6, 8)], s.next);
    expect(loaded(p)).toEqual(['a/2-5', 'a/6-8']);
  });

  it('loads a split parent to its end before its children, and a merge after both parents', async () => {
    const s = stream({ p: { n: 4, closed: true }, c1: { n: 2 }, c2: { n: 3, closed: true }, c3: { n: 2, closed: true }, m: { n: 2 } });
    const shards = [shard('c1', ['p']), shard('p', [], true), shard('c2', ['p'], true), shard('c3', ['p'], true), shard('m', ['c2', 'c3'])];
    // c3 is not loaded to its end (its record 1 has no batch yet): the merge waits for it
    const pending = [batch('p', 0, 3), batch('c1', 0, 1), batch('c2', 0, 2), batch('c3', 0, 0), batch('m', 0, 1)];
    const plans = await plan(shards, pending, s.next);
    const byShard = Object.fromEntries(plans.map((p) => [p.shard, p]));
    expect(plans.map((p) => p.shard).indexOf('p')).toBeLessThan(plans.map((p) => p.shard).indexOf('c1'));
    expect(byShard.p).toMatchObject({ ended: true, waitingFor: [] });
    expect(loaded(byShard.c1)).toEqual(['c1/0-1']);
    expect(byShard.c2.ended).toBe(true);
    expect(byShard.c3.ended).toBe(false);
    expect(byShard.m).toMatchObject({ batches: [], waitingFor: ['c3'] });

    // a parent whose batches are not all in yet holds its children back
    const held = await plan([shard('p', [], true), shard('c1', ['p'])], [batch('p', 0, 1), batch('c1', 0, 1)], s.next);
    expect(held.find((p) => p.shard === 'c1')).toMatchObject({ batches: [], waitingFor: ['p'] });
    // a parent the stream no longer lists has aged out: its children go ahead
    const orphan = await plan([shard('c1', ['gone'])], [batch('c1', 0, 1)], s.next);
    expect(loaded(orphan[0])).toEqual(['c1/0-1']);
  });

  it('leaves an ended shard alone', async () => {
    const s = stream({ p: { n: 4, closed: true } });
    const [p] = await plan([shard('p', [], true)], [batch('p', 0, 3)], s.next, { p: { frontier: seq(3), ended: true } });
    expect(p).toMatchObject({ batches: [], ended: true });
    expect(s.asked).toEqual([]);
  });

  it('interleaves the shards by commit time for loading, each shard in its order, parents before children', async () => {
    const t = (second: number) => `2026-12-01T10:00:${String(second).padStart(2, '0')}.000Z`;
    const s = stream({ a: { n: 6 }, b: { n: 6 }, p: { n: 2, closed: true }, c: { n: 2 } });
    const pending = [
      batch('a', 0, 1, t(1)),
      batch('a', 2, 3, null), // heartbeats only: goes with the batch before it
      batch('a', 4, 5, t(30)),
      batch('b', 0, 1, t(2)),
      batch('b', 2, 3, t(20)),
      batch('b', 4, 5, t(40)),
      batch('p', 0, 1, t(50)),
      batch('c', 0, 1, t(0)), // older commits than its parent's, still after it
    ];
    const plans = await plan([shard('a'), shard('b'), shard('p', [], true), shard('c', ['p'])], pending, s.next);
    expect(loadOrder(plans).map(({ batch }) => batch.key)).toEqual(['a/0-1', 'a/2-3', 'b/0-1', 'b/2-3', 'a/4-5', 'b/4-5', 'p/0-1', 'c/0-1']);
  });
});
