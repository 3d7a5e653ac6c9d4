/** What the producer sends next with several calls in flight: bundling, per-row order, and acceptance only over a contiguous run. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { recordLines } from '../formats/change-event.ts';
import { RecordQueue, routeOf, type SentRecord } from './record-queue.ts';

const LIMITS = { recordBytes: 1_000, batchRecords: 3, batchBytes: 10_000, recordEvents: Number.POSITIVE_INFINITY };
const line = (text: string) => `${text}\n`;
const keysOf = (batch: SentRecord[]) => batch.map((r) => r.partitionKey);
/** The event lines a taken record's data holds, in order. */
const linesOf = (r: SentRecord) => recordLines(r.data.toString());

describe('RecordQueue', () => {
  it('bundles consecutive changes of a row into its unsent record, in order, up to the record limit', () => {
    const q = new RecordQueue(LIMITS);
    q.add(line('a1'), 'a');
    q.add(line('b1'), 'b');
    q.add(line('a2'), 'a');
    q.add(line('a3'), 'a');
    expect(q.pendingRecords).toBe(2);
    const [a, b] = q.take();
    expect(linesOf(a)).toEqual(['a1', 'a2', 'a3']);
    expect(a.indices).toEqual([0, 2, 3]);
    expect(linesOf(b)).toEqual(['b1']);
    // the bytes Kinesis counts: the data and the partition key once
    expect(a.bytes).toBe(3 * 3 + 1);

    const full = new RecordQueue({ ...LIMITS, recordBytes: 10 });
    full.add(line('1234'), 'k'); // 5 + 1
    full.add(line('123'), 'k'); // would be 10: fits
    full.add(line('x'), 'k'); // 12: a record of its own
    expect(full.pendingRecords).toBe(2);
    expect(() => full.add(line('0123456789'), 'k')).toThrow(/exceeds the Kinesis limit of 10/);
    expect(full.writtenThrough).toBe(2); // the refused event took no index
  });

  it('never bundles into a record already sent, nor past maxEventsPerRecord, nor a broadcast copy', () => {
    const q = new RecordQueue({ ...LIMITS, recordEvents: 2 });
    q.add(line('a1'), 'a');
    const [sent] = q.take();
    q.add(line('a2'), 'a');
    q.add(line('a3'), 'a');
    q.add(line('a4'), 'a');
    expect(linesOf(sent)).toEqual(['a1']);
    expect(q.pendingRecords).toBe(2); // [a2, a3] and [a4]
    q.add(line('hb'), 'heartbeat', { explicitHashKey: '0', alone: true });
    q.add(line('hb2'), 'heartbeat', { explicitHashKey: '0', alone: true });
    expect(q.pendingRecords).toBe(4);
  });

  it('keeps a row out of every call while one of its records is in flight, and lets other rows go', () => {
    const q = new RecordQueue(LIMITS);
    for (const k of ['a', 'b', 'c', 'd']) q.add(line(`${k}1`), k);
    const first = q.take();
    expect(keysOf(first)).toEqual(['a', 'b', 'c']); // the batch limit
    q.add(line('a2'), 'a');
    q.add(line('e1'), 'e');
    const second = q.take();
    expect(keysOf(second)).toEqual(['d', 'e']); // a is in flight: a2 waits
    expect(q.take()).toEqual([]);
    q.accepted(first.filter((r) => r.partitionKey !== 'a'));
    expect(q.take()).toEqual([]); // still in flight: its record failed and is being retried
    q.accepted(first.filter((r) => r.partitionKey === 'a'));
    expect(q.take().map(linesOf)).toEqual([['a2']]);
  });

  it('takes a row whose record filled up one record at a time, oldest first', () => {
    const q = new RecordQueue({ ...LIMITS, recordEvents: 1 });
    q.add(line('a1'), 'a');
    q.add(line('a2'), 'a');
    q.add(line('b1'), 'b');
    const first = q.take();
    expect(first.map(linesOf)).toEqual([['a1'], ['b1']]);
    q.accepted(first);
    expect(q.take().map(linesOf)).toEqual([['a2']]);
  });

  it('accepts through an index only when every event before it is accepted, whichever call finishes first', () => {
    const q = new RecordQueue(LIMITS);
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) q.add(line(k), k);
    const early = q.take(); // a, b, c: indices 0-2
    const late = q.take(); // d, e, f: indices 3-5
    expect(q.accepted(late)).toBe(false); // the later call succeeds first
    expect(q.acceptedThrough).toBe(-1);
    // the early call partly fails: a and c accepted, b to be retried
    expect(q.accepted([early[0], early[2]])).toBe(true);
    expect(q.acceptedThrough).toBe(0);
    expect(q.idle).toBe(false);
    q.accepted([early[1]]);
    expect(q.acceptedThrough).toBe(5);
    expect(q.idle).toBe(true);
  });

  it('counts a bundle accepted through its last event only once the events between are accepted too', () => {
    const q = new RecordQueue(LIMITS);
    q.add(line('a1'), 'a'); // 0
    q.add(line('b1'), 'b'); // 1
    q.add(line('a2'), 'a'); // 2, bundled with 0
    const [a, b] = q.take();
    q.accepted([a]);
    expect(q.acceptedThrough).toBe(0); // 2 is in, but 1 is not yet
    q.accepted([b]);
    expect(q.acceptedThrough).toBe(2);
  });

  it('holds the bytes of unsent records, and of taken ones until accepted: a refused record until its retry is', () => {
    const q = new RecordQueue(LIMITS);
    q.add(line('a1'), 'a'); // 3 + 1
    q.add(line('b1'), 'b');
    q.add(line('a2'), 'a'); // bundled: 3 more
    expect(q.bytesHeld).toBe(11);
    const [a, b] = q.take();
    expect(q.bytesPending).toBe(0);
    expect(q.bytesHeld).toBe(11); // in flight
    q.add(line('c1'), 'c');
    expect(q.bytesHeld).toBe(15);
    q.accepted([b]); // a is refused, to be retried
    expect(q.bytesHeld).toBe(11);
    q.accepted([a]);
    expect(q.bytesHeld).toBe(4); // c1, unsent
  });

  it('says how long the oldest unsent record has waited', () => {
    const q = new RecordQueue(LIMITS);
    expect(q.oldestPendingAt).toBeUndefined();
    q.add(line('a'), 'a', { at: 100 });
    q.add(line('b'), 'b', { at: 105 });
    q.add(line('a2'), 'a', { at: 110 }); // bundled: the record still waits since 100
    expect(q.oldestPendingAt).toBe(100);
    q.take();
    expect(q.oldestPendingAt).toBeUndefined();
  });
});

describe('routeOf', () => {
  it("routes every record of a row to the same point of the hash space: its bucket's midpoint, on one shard whatever the resharding", () => {
    const a = routeOf('sales_order:42', 4096);
    expect(routeOf('sales_order:42', 4096)).toEqual(a);
    const bucket = Number(a.partitionKey.slice('rows-'.length));
    const width = (1n << 128n) / 4096n;
    expect(BigInt(a.explicitHashKey!)).toBe(BigInt(bucket) * width + width / 2n);
    // the bucket is the slice Kinesis's own hash of the row key falls in (MD5, as a 128-bit number)
    const md5 = BigInt(`0x${createHash('md5').update('sales_order:42').digest('hex')}`);
    expect(BigInt(bucket)).toBe(md5 / width);
  });

  it('spreads rows over the buckets, and with 0 buckets keeps each row its own partition key', () => {
    const used = new Set(Array.from({ length: 10_000 }, (_, i) => routeOf(`payment:${i}`, 64).partitionKey));
    expect(used.size).toBe(64);
    expect(routeOf('payment:7', 0)).toEqual({ partitionKey: 'payment:7' });
  });
});
