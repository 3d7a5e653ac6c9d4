/**
 * The producer with several PutRecords calls in flight, against a client whose calls the test
 * answers one by one, in any order, in part: the one fault kinesalite cannot be made to show (a
 * later call finishing before an earlier one that then fails in part). kinesis-sink.test.ts runs
 * the same producer against kinesalite.
 */
import {
  ListShardsCommand,
  type PutRecordsCommand,
  type KinesisClient,
  type PutRecordsRequestEntry,
  type PutRecordsResultEntry,
} from '@aws-sdk/client-kinesis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeRecord, encodeEvent, type ChangeEvent } from '../formats/change-event.ts';
import { log } from '../lib/log.ts';
import { salesOrderChange } from '../test/kinesis-events.ts';
import { heartbeatAt } from '../test/stream-fixture.ts';
import { KinesisSink } from './kinesis-sink.ts';

interface Call {
  records: PutRecordsRequestEntry[];
  /** Answers the call: the records at `failed` refused (throttled), the rest accepted. */
  answer(failed?: number[]): void;
}

class ScriptedKinesis {
  readonly calls: Call[] = [];
  private sequence = 0;

  async send(command: unknown): Promise<unknown> {
    if (command instanceof ListShardsCommand)
      return { Shards: [{ ShardId: 'shardId-000000000000', HashKeyRange: { StartingHashKey: '0', EndingHashKey: '1' }, SequenceNumberRange: {} }] };
    const records = (command as PutRecordsCommand).input.Records ?? [];
    return new Promise((resolve) =>
      this.calls.push({
        records,
        answer: (failed = []) => {
          const entries: PutRecordsResultEntry[] = records.map((_, i) =>
            failed.includes(i)
              ? { ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: 'Rate exceeded for shard shardId-000000000000' }
              : { ShardId: 'shardId-000000000000', SequenceNumber: String(++this.sequence) },
          );
          resolve({ Records: entries, FailedRecordCount: failed.length, $metadata: {} });
        },
      }),
    );
  }
}

/** The ids of the sales_order changes a call carries, record by record. */
const idsIn = (call: Call) => call.records.map((r) => decodeRecord(Buffer.from(r.Data!).toString()).map((e) => (e as ChangeEvent).key.sales_order_id));

/**
 * A sink on the scripted client; each row routed by its own partition key unless `hashBuckets`
 * says otherwise. Partly filled batches go only when flushed (a linger of a minute), so what a
 * call holds does not depend on how fast this machine writes.
 */
function setup(opts: { maxCallsInFlight?: number; hashBuckets?: number } = {}) {
  const kinesis = new ScriptedKinesis();
  const sink = new KinesisSink({ client: kinesis as unknown as KinesisClient, streamName: 'changes', hashBuckets: 0, lingerMs: 60_000, ...opts });
  const reported: number[] = [];
  sink.onAccepted((through) => reported.push(through));
  const callsMade = (n: number) => vi.waitFor(() => expect(kinesis.calls.length).toBeGreaterThanOrEqual(n), { timeout: 2_000, interval: 5 });
  return { kinesis, sink, reported, callsMade };
}

describe('KinesisSink with several calls in flight', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('an early call fails in part while later calls succeed: the ack waits for the retry, and no later change of a refused row overtakes it', async () => {
    vi.spyOn(log, 'warn').mockImplementation(() => undefined);
    const { kinesis, sink, reported, callsMade } = setup({ maxCallsInFlight: 3 });
    // 1,500 rows, one change each: three full calls in flight at once
    for (let id = 1; id <= 1_500; id++) await sink.write(salesOrderChange(id));
    await callsMade(3);
    expect(kinesis.calls.map((c) => c.records.length)).toEqual([500, 500, 500]);
    expect(sink.metrics.maxCallsInFlight).toBe(3);
    // the next change of row 1 (in the first call) and of a new row
    await sink.write(salesOrderChange(1, 'u'));
    await sink.write(salesOrderChange(2_000));
    const flushed = sink.flush(); // sends what it can as calls free

    kinesis.calls[2].answer();
    kinesis.calls[1].answer();
    expect(sink.acceptedThrough).toBe(-1); // the first call has not answered: nothing is contiguous
    // the first call: row 1's record refused, the other 499 accepted
    kinesis.calls[0].answer([0]);
    await vi.waitFor(() => expect(sink.metrics.records).toBe(1_499));
    expect(sink.acceptedThrough).toBe(-1); // index 0 is row 1's first change, not yet in the stream
    expect(reported).toEqual([]);

    // its retry, and the new row's call: row 1's second change waits for the retry
    await callsMade(5);
    const later = kinesis.calls.slice(3);
    const retry = later.find((c) => idsIn(c).flat().includes(1))!;
    expect(idsIn(retry)).toEqual([[1]]);
    expect(later.filter((c) => c !== retry).flatMap(idsIn)).toEqual([[2_000]]);
    for (const c of later) if (c !== retry) c.answer();
    await new Promise((r) => setTimeout(r, 50));
    expect(kinesis.calls).toHaveLength(5); // nothing sent of row 1 while its first change is refused
    expect(sink.acceptedThrough).toBe(-1);

    retry.answer();
    await vi.waitFor(() => expect(sink.acceptedThrough).toBe(1_499));
    await callsMade(6);
    expect(idsIn(kinesis.calls[5])).toEqual([[1]]);
    expect(decodeRecord(Buffer.from(kinesis.calls[5].records[0].Data!).toString())[0]).toMatchObject({ op: 'u' });
    kinesis.calls[5].answer();
    await flushed;
    expect(sink.acceptedThrough).toBe(1_501);
    expect(reported).toEqual([...reported].sort((a, b) => a - b));
    expect(reported.at(-1)).toBe(1_501);
  });

  it('makes a writer wait once the bytes unsent and in flight reach 10 MiB, however many calls could still go', async () => {
    const { kinesis, sink, callsMade } = setup({ maxCallsInFlight: 4 });
    const PAD = 200_000;
    const big = (id: number) => salesOrderChange(id, 'c', { pad: 'x'.repeat(PAD) });
    const eventBytes = Buffer.byteLength(encodeEvent(big(1))) + Buffer.byteLength('sales_order:1');
    const HELD = 10 * 1024 * 1024;
    let written = 0;
    const writing = (async () => {
      for (let id = 1; id <= 120; id++) {
        await sink.write(big(id));
        written++;
      }
    })();
    await callsMade(2);
    await new Promise((r) => setTimeout(r, 50));
    // two full calls are out and two more may go, but the writer waits: it holds no more than the bound and the change it waits with
    expect(kinesis.calls).toHaveLength(2);
    expect(written * eventBytes).toBeGreaterThan(HELD - eventBytes);
    expect(written * eventBytes).toBeLessThan(HELD + eventBytes);

    kinesis.calls[0].answer(); // bytes freed: it goes on
    await vi.waitFor(() => expect(written).toBeGreaterThan(60), { timeout: 2_000, interval: 5 });
    let answered = 1;
    const answering = setInterval(() => {
      for (; answered < kinesis.calls.length; answered++) kinesis.calls[answered].answer();
    }, 5);
    try {
      await writing;
      await sink.flush();
    } finally {
      clearInterval(answering);
    }
    expect(sink.acceptedThrough).toBe(119);
  });

  it('sends a thousand changes of one row as one record, in order, in one call', async () => {
    const { kinesis, sink, callsMade } = setup();
    const written = Array.from({ length: 1_000 }, (_, i) => salesOrderChange(7, 'u', { units_sold: i }));
    for (const e of written) await sink.write(e);
    const flushed = sink.flush();
    await callsMade(1);
    kinesis.calls[0].answer();
    await flushed;
    expect(kinesis.calls).toHaveLength(1);
    expect(kinesis.calls[0].records).toHaveLength(1);
    expect(kinesis.calls[0].records[0].PartitionKey).toBe('sales_order:7');
    expect(decodeRecord(Buffer.from(kinesis.calls[0].records[0].Data!).toString())).toEqual(written);
    expect(sink.acceptedThrough).toBe(999);
    expect(sink.metrics).toMatchObject({ records: 1, events: 1_000, putCalls: 1 });
  });

  it('puts rows of one hash bucket in one record, in write order, and holds the whole bucket back while it is in flight', async () => {
    const { kinesis, sink, callsMade } = setup({ hashBuckets: 1 });
    for (let id = 1; id <= 5; id++) await sink.write(salesOrderChange(id));
    const flushed = sink.flush();
    await callsMade(1); // one record of five rows
    expect(idsIn(kinesis.calls[0])).toEqual([[1, 2, 3, 4, 5]]);
    expect(kinesis.calls[0].records[0]).toMatchObject({ PartitionKey: 'rows-0', ExplicitHashKey: (1n << 127n).toString() });
    await sink.write(salesOrderChange(6));
    await sink.write(salesOrderChange(1, 'u'));
    await new Promise((r) => setTimeout(r, 50));
    expect(kinesis.calls).toHaveLength(1); // the bucket is in flight: its next record waits
    kinesis.calls[0].answer([0]);
    await callsMade(2);
    expect(idsIn(kinesis.calls[1])).toEqual([[1, 2, 3, 4, 5]]); // the retry, alone
    kinesis.calls[1].answer();
    await callsMade(3);
    expect(idsIn(kinesis.calls[2])).toEqual([[6, 1]]);
    kinesis.calls[2].answer();
    await flushed;
    expect(sink.acceptedThrough).toBe(6);
  });

  it('sends a broadcast only once every call before it is accepted, and nothing after it until it is', async () => {
    const { kinesis, sink, callsMade } = setup();
    for (let id = 1; id <= 600; id++) await sink.write(salesOrderChange(id));
    let broadcastDone = false;
    const broadcast = sink.broadcast(heartbeatAt('0/FFFF')).then(() => {
      broadcastDone = true;
    });
    await callsMade(2); // 500, and the 100 the flush before the broadcast sends
    kinesis.calls[1].answer();
    await new Promise((r) => setTimeout(r, 30));
    expect(kinesis.calls).toHaveLength(2); // the first call is still out
    kinesis.calls[0].answer();
    await callsMade(3);
    expect(Buffer.from(kinesis.calls[2].records[0].Data!).toString()).toContain('"heartbeat"');
    expect(broadcastDone).toBe(false);
    kinesis.calls[2].answer();
    await broadcast;
    expect(sink.acceptedThrough).toBe(600);
  });
});
