/**
 * The Kinesis producer against real (local) Kinesis behind a fault-injecting wrapper:
 * PutRecords calls are throttled whole or accepted only in part, at random (seeded), and the
 * stream read back afterwards must hold every event exactly once, each row's changes in the
 * order they were written, in batches within the PutRecords limits (500 records, 5 MiB).
 */
import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  type KinesisClient,
  ListShardsCommand,
  ProvisionedThroughputExceededException,
  PutRecordsCommand,
  type PutRecordsCommandOutput,
  type PutRecordsResultEntry,
} from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { bigIntToLsn, decodeRecord, type ChangeEvent, type HeartbeatEvent, type StreamEvent } from '../formats/change-event.ts';
import { kinesisClient } from '../lib/aws.ts';
import { log } from '../lib/log.ts';
import { freePort, startKinesis, type LocalKinesis } from '../local/servers.ts';
import { changeEvent } from '../test/kinesis-events.ts';
import { Random } from '../totesys/random.ts';
import { KinesisSink, MAX_RECORD_BYTES } from './kinesis-sink.ts';

const SHARDS = 4;
const MAX_RECORDS = 500;
const MAX_BATCH_BYTES = 5 * 1024 * 1024;

interface PutCall {
  records: number;
  bytes: number;
  outcome: 'throttled' | 'partial' | 'ok';
}

/**
 * A KinesisClient stand-in: everything goes to the real client, except that PutRecords is, at
 * random, refused whole (ProvisionedThroughputExceededException, nothing written) or sent with
 * only some of its records, the others answered with an ErrorCode in their original positions.
 */
class FaultyKinesis {
  readonly calls: PutCall[] = [];
  /** Calls over the PutRecords limits (the wrapper refuses them as Kinesis would). */
  readonly violations: string[] = [];
  /** Data of every record the real stream accepted, in the order accepted. */
  readonly delivered: string[] = [];

  constructor(
    private readonly real: KinesisClient,
    private readonly rng: Random,
    private readonly rates: { throttle: number; partial: number },
  ) {}

  async send(command: unknown): Promise<unknown> {
    if (!(command instanceof PutRecordsCommand)) return this.real.send(command as ListShardsCommand);
    const records = command.input.Records ?? [];
    const bytes = records.reduce((n, r) => n + (r.Data?.byteLength ?? 0) + Buffer.byteLength(r.PartitionKey ?? ''), 0);
    const call: PutCall = { records: records.length, bytes, outcome: 'ok' };
    this.calls.push(call);
    if (records.length > MAX_RECORDS || bytes > MAX_BATCH_BYTES) {
      // Kinesis would refuse it and the producer retry it for ever: note it, and let it through
      // in pieces so the test fails on the note instead of hanging
      this.violations.push(`PutRecords with ${records.length} records, ${bytes} bytes`);
      const entries: PutRecordsResultEntry[] = [];
      for (let i = 0; i < records.length; ) {
        const piece = [records[i++]];
        let size = piece[0].Data!.byteLength;
        while (i < records.length && piece.length < MAX_RECORDS && size + records[i].Data!.byteLength < 4 * 1024 * 1024) {
          size += records[i].Data!.byteLength;
          piece.push(records[i++]);
        }
        const out = await this.real.send(new PutRecordsCommand({ ...command.input, Records: piece }));
        (out.Records ?? []).forEach((e, j) => {
          if (!e.ErrorCode) this.delivered.push(Buffer.from(piece[j].Data!).toString('utf8'));
        });
        entries.push(...(out.Records ?? []));
      }
      return { Records: entries, FailedRecordCount: entries.filter((e) => e.ErrorCode).length, $metadata: {} };
    }
    const roll = this.rng.next();
    if (roll < this.rates.throttle) {
      call.outcome = 'throttled';
      throw new ProvisionedThroughputExceededException({
        message: 'Rate exceeded for stream changes under account 000000000000.',
        $metadata: { httpStatusCode: 400 },
      });
    }
    const accept = records.map(() => true);
    if (roll < this.rates.throttle + this.rates.partial) {
      call.outcome = 'partial';
      for (let i = 0; i < accept.length; i++) accept[i] = this.rng.chance(0.5);
      if (accept.every(Boolean)) accept[this.rng.int(0, accept.length - 1)] = false;
    }
    const subset = records.filter((_, i) => accept[i]);
    const real =
      subset.length > 0
        ? await this.real.send(new PutRecordsCommand({ ...command.input, Records: subset }))
        : ({ Records: [] as PutRecordsResultEntry[], FailedRecordCount: 0, $metadata: {} } as Partial<PutRecordsCommandOutput>);
    const realEntries = real.Records ?? [];
    realEntries.forEach((entry, i) => {
      if (!entry.ErrorCode) this.delivered.push(Buffer.from(subset[i].Data!).toString('utf8'));
    });
    let next = 0;
    const entries: PutRecordsResultEntry[] = records.map((_, i) =>
      accept[i]
        ? realEntries[next++]
        : this.rng.chance(0.8)
          ? {
              ErrorCode: 'ProvisionedThroughputExceededException',
              ErrorMessage: 'Rate exceeded for shard shardId-000000000000 in stream changes under account 000000000000.',
            }
          : { ErrorCode: 'InternalFailure', ErrorMessage: 'Internal service failure.' },
    );
    return { ...real, FailedRecordCount: entries.filter((e) => e.ErrorCode).length, Records: entries };
  }

  get stats() {
    return {
      calls: this.calls.length,
      throttled: this.calls.filter((c) => c.outcome === 'throttled').length,
      partial: this.calls.filter((c) => c.outcome === 'partial').length,
      maxRecords: Math.max(0, ...this.calls.map((c) => c.records)),
      maxBytes: Math.max(0, ...this.calls.map((c) => c.bytes)),
    };
  }
}

/** A change of sales_order `id`; the `seq` column carries the order the test wrote it in. */
function change(id: number, seq: number, lsn: bigint, pos: number, padBytes = 0): ChangeEvent {
  const after = { sales_order_id: id, seq, pad: padBytes > 0 ? 'x'.repeat(padBytes) : null };
  return changeEvent('sales_order', 'u', after, { lsn: bigIntToLsn(lsn), pos, xid: seq, commitTime: new Date(Date.UTC(2024, 4, 1) + seq).toISOString() });
}

const idOf = (e: StreamEvent) => `${e.source.lsn}:${e.source.pos}`;

/** Every record of the stream, per shard in sequence order. */
async function readStream(client: KinesisClient, streamName: string): Promise<Map<string, StreamEvent[]>> {
  const out = new Map<string, StreamEvent[]>();
  const { Shards } = await client.send(new ListShardsCommand({ StreamName: streamName }));
  for (const shard of Shards ?? []) {
    const events: StreamEvent[] = [];
    let iterator = (await client.send(new GetShardIteratorCommand({ StreamName: streamName, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' })))
      .ShardIterator;
    while (iterator) {
      const page = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
      for (const r of page.Records ?? []) events.push(...decodeRecord(Buffer.from(r.Data!).toString('utf8')));
      if (!page.Records?.length) break;
      iterator = page.NextShardIterator;
    }
    out.set(shard.ShardId!, events);
  }
  return out;
}

/** flush(), but failing with what the wrapper saw instead of hanging when the sink retries something Kinesis will never accept. */
async function flushWithin(sink: KinesisSink, faulty: FaultyKinesis, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`flush did not finish within ${ms} ms; ${JSON.stringify(faulty.stats)}; violations: ${faulty.violations.slice(0, 3).join('; ')}`)),
      ms,
    );
  });
  try {
    await Promise.race([sink.flush(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('KinesisSink against Kinesis that throttles and fails records', () => {
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  let streams = 0;

  beforeAll(async () => {
    // the producer logs a warning per retry; thousands of them here, all expected
    vi.spyOn(log, 'warn').mockImplementation(() => undefined);
    kinesis = await startKinesis({ port: await freePort(), streams: [] });
    client = kinesisClient({ kinesisEndpoint: kinesis.endpoint });
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    client?.destroy();
    await kinesis?.stop();
  });

  async function newStream(): Promise<string> {
    const name = `sink-${++streams}`;
    const { CreateStreamCommand, DescribeStreamSummaryCommand } = await import('@aws-sdk/client-kinesis');
    await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: SHARDS }));
    while ((await client.send(new DescribeStreamSummaryCommand({ StreamName: name }))).StreamDescriptionSummary?.StreamStatus !== 'ACTIVE') {
      await new Promise((r) => setTimeout(r, 20));
    }
    return name;
  }

  // Unbundled, a row's changes are many records, so order across calls and retries is what is
  // tested; bundled, consecutive changes of a row (or of the rows of a hash bucket) share records.
  it.each([
    { bundling: 'one change a record', maxEventsPerRecord: 1, hashBuckets: undefined, keys: 1_500, changes: 6_000 },
    { bundling: 'changes of a row bundled', maxEventsPerRecord: undefined, hashBuckets: 0, keys: 1_500, changes: 6_000 },
    { bundling: 'rows of a hash bucket bundled', maxEventsPerRecord: undefined, hashBuckets: 64, keys: 1_500, changes: 6_000 },
  ])(
    'retries partial failures and throttling until every event is in the stream exactly once, each row in write order ($bundling)',
    async ({ maxEventsPerRecord, hashBuckets, keys: KEYS, changes: CHANGES }) => {
      const streamName = await newStream();
      const faulty = new FaultyKinesis(client, new Random(20240501), { throttle: 0.15, partial: 0.25 });
      const sink = new KinesisSink({ client: faulty as unknown as KinesisClient, streamName, maxEventsPerRecord, hashBuckets });
      const rng = new Random(77);

      const accepted: number[] = [];
      const written: { index: number; id: string }[] = [];
      sink.onAccepted((through) => {
        accepted.push(through);
        // the producer must never report as accepted an event Kinesis has not taken
        const delivered = new Set(faulty.delivered.flatMap((d) => decodeRecord(d).map(idOf)));
        const ahead = written.filter((w) => w.index <= through && !delivered.has(w.id));
        if (ahead.length > 0)
          throw new Error(`acceptedThrough ${through} reported before Kinesis accepted ${ahead.length} of those events, e.g. ${ahead[0].id}`);
      });

      // 6,000 changes over 1,500 rows, in transactions of 1-5 changes with increasing (lsn, pos).
      // Rows are written in shuffled rounds with occasional repeats, so several calls are in flight
      // with a row's next change waiting for its last; a heartbeat now and then goes to every shard.
      const perKey = new Map<number, number[]>();
      const heartbeats: HeartbeatEvent[] = [];
      let lsn = 0x1_0000_0000n;
      let seq = 0;
      while (seq < CHANGES) {
        const round = Array.from({ length: KEYS }, (_, i) => i + 1).filter(() => rng.chance(0.8));
        for (let i = round.length - 1; i > 0; i--) {
          const j = rng.int(0, i);
          [round[i], round[j]] = [round[j], round[i]];
        }
        for (let i = 0; i < round.length; ) {
          lsn += BigInt(rng.int(1, 4000));
          const size = rng.int(1, 5);
          for (let pos = 0; pos < size && i < round.length; pos++) {
            const id = rng.chance(0.02) ? rng.pick(round.slice(0, i + 1)) : round[i++];
            const event = change(id, seq, lsn, pos);
            written.push({ index: sink.writtenThrough + 1, id: idOf(event) });
            perKey.set(id, [...(perKey.get(id) ?? []), seq]);
            seq++;
            await sink.write(event);
          }
          if (rng.chance(0.01)) {
            lsn += 16n;
            const hb: HeartbeatEvent = { v: 1, kind: 'heartbeat', source: { lsn: bigIntToLsn(lsn), pos: 0, xid: null, commitTime: new Date().toISOString() } };
            heartbeats.push(hb);
            await sink.broadcast(hb);
          }
        }
      }
      await flushWithin(sink, faulty, 25_000);

      expect(faulty.violations).toEqual([]);

      // everything accepted, and acceptance only moved forward
      expect(sink.acceptedThrough).toBe(sink.writtenThrough);
      expect(accepted.at(-1)).toBe(sink.writtenThrough);
      expect(accepted).toEqual([...accepted].sort((a, b) => a - b));

      // the stream: every change exactly once, each row's changes in the order written
      const shards = await readStream(client, streamName);
      const all = [...shards.values()].flat();
      const changes = all.filter((e): e is ChangeEvent => e.kind === 'change');
      expect(changes.length).toBe(seq);
      expect(new Set(changes.map(idOf)).size).toBe(seq);
      const foundPerKey = new Map<number, number[]>();
      for (const events of shards.values()) {
        for (const e of events) {
          if (e.kind !== 'change') continue;
          const id = e.key.sales_order_id as number;
          foundPerKey.set(id, [...(foundPerKey.get(id) ?? []), e.after!.seq as number]);
        }
      }
      expect(Object.fromEntries([...foundPerKey].sort(([a], [b]) => a - b))).toEqual(Object.fromEntries([...perKey].sort(([a], [b]) => a - b)));
      // a row lives on one shard
      for (const [id] of perKey)
        expect([...shards.values()].filter((events) => events.some((e) => e.kind === 'change' && e.key.sales_order_id === id))).toHaveLength(1);

      // heartbeats: once on every shard, after every change written before them
      expect(heartbeats.length).toBeGreaterThan(3);
      for (const [shard, events] of shards) {
        const hbs = events.filter((e) => e.kind === 'heartbeat').map(idOf);
        expect(hbs, `heartbeats on ${shard}`).toEqual(heartbeats.map(idOf));
        // a change sits after exactly the heartbeats written before it
        let heartbeatsSeen = 0;
        for (const e of events) {
          if (e.kind === 'heartbeat') {
            heartbeatsSeen++;
            continue;
          }
          const writtenBefore = heartbeats.filter((hb) => compareLsn(hb.source.lsn, e.source.lsn) < 0).length;
          expect(heartbeatsSeen, `heartbeats ahead of change ${idOf(e)} on ${shard}`).toBe(writtenBefore);
        }
      }

      // the faults really happened and were retried, within the PutRecords limits
      const stats = faulty.stats;
      console.info(
        `producer: ${seq} changes, ${heartbeats.length} heartbeats, ${sink.metrics.records} records; ${JSON.stringify(stats)}; retries ${sink.metrics.retries}, up to ${sink.metrics.maxCallsInFlight} calls in flight`,
      );
      // 64 buckets fill one call each linger, so only the many-record variants are sure to overlap calls
      if (hashBuckets !== 64) expect(sink.metrics.maxCallsInFlight).toBeGreaterThan(1);
      if (maxEventsPerRecord === 1) expect(sink.metrics.records).toBe(sink.metrics.events);
      else expect(sink.metrics.records).toBeLessThan(sink.metrics.events);
      expect(stats.throttled).toBeGreaterThanOrEqual(3);
      expect(stats.partial).toBeGreaterThanOrEqual(3);
      expect(sink.metrics.retries).toBeGreaterThanOrEqual(stats.throttled + stats.partial);
      expect(stats.maxRecords).toBeLessThanOrEqual(MAX_RECORDS);
      expect(stats.maxBytes).toBeLessThanOrEqual(MAX_BATCH_BYTES);
    },
  );

  it('sends PutRecords of at most 500 records and 5 MiB, filling batches up to those limits', async () => {
    const streamName = await newStream();
    const faulty = new FaultyKinesis(client, new Random(5), { throttle: 0.1, partial: 0.2 });
    // partly filled batches only when flushed, so how full a call is does not depend on how fast this machine writes
    const sink = new KinesisSink({ client: faulty as unknown as KinesisClient, streamName, lingerMs: 60_000 });
    let seq = 0;
    let lsn = 0x2_0000_0000n;
    // 1,300 small changes of distinct rows: the record limit is what ends a batch
    for (let id = 1; id <= 1_300; id++) await sink.write(change(id, seq++, (lsn += 100n), 0));
    await flushWithin(sink, faulty, 20_000);
    const small = faulty.stats;
    expect(faulty.violations).toEqual([]);
    expect(small.maxRecords).toBe(MAX_RECORDS);

    // 120 changes of ~200 KB, distinct rows: the 5 MiB limit is what ends a batch
    const before = faulty.calls.length;
    const PAD = 200_000;
    for (let id = 10_001; id <= 10_120; id++) await sink.write(change(id, seq++, (lsn += 100n), 0, PAD));
    await flushWithin(sink, faulty, 20_000);
    expect(faulty.violations).toEqual([]);
    const bigCalls = faulty.calls.slice(before);
    const maxBytes = Math.max(...bigCalls.map((c) => c.bytes));
    expect(maxBytes).toBeLessThanOrEqual(MAX_BATCH_BYTES);
    expect(maxBytes).toBeGreaterThan(MAX_BATCH_BYTES - PAD - 1_000); // full: one more record would not fit
    expect(sink.acceptedThrough).toBe(sink.writtenThrough);

    const changes = [...(await readStream(client, streamName)).values()].flat();
    expect(changes.length).toBe(seq);
    expect(new Set(changes.map(idOf)).size).toBe(seq);
  });

  it('stops retrying what Kinesis will refuse for ever (a stream that does not exist), failing the flush with its reason', async () => {
    const sink = new KinesisSink({ client, streamName: 'no-such-stream' });
    await sink.write(change(1, 1, 0x1_0000_0000n, 0));
    await expect(sink.flush()).rejects.toThrow(/^PutRecords refused \(ResourceNotFoundException\)/);
    expect(sink.metrics.retries).toBe(0);
  });

  it('rejects an event over the 1 MiB record limit with an error naming the limit', async () => {
    const streamName = await newStream();
    const faulty = new FaultyKinesis(client, new Random(1), { throttle: 0, partial: 0 });
    const sink = new KinesisSink({ client: faulty as unknown as KinesisClient, streamName });
    await expect(sink.write(change(1, 0, 0x3_0000_0000n, 0, MAX_RECORD_BYTES))).rejects.toThrow(/exceeds the Kinesis limit of 1048576/);
    await sink.flush();
    expect(faulty.calls).toEqual([]);
  });
});

function compareLsn(a: string, b: string): number {
  const [ah, al] = a.split('/').map((x) => parseInt(x, 16));
  const [bh, bl] = b.split('/').map((x) => parseInt(x, 16));
  return ah !== bh ? ah - bh : al - bl;
}
