/**
 * The capture figures of one workload, each beside its reference, in interleaved turns, each in
 * a database of its own:
 *   measureDrains: the null sink against pg_recvlogical, on the same WAL from the same point
 *   (each turn drains a fresh copy of a slot made before the workload);
 *   measureKinesis: the Kinesis sink against the emulator's PutRecords ceiling, each capture turn
 *   into a stream of its own (a smaller workload: the emulator is slow, and 2 s is enough).
 * measureDrains can also fill a stream for downstream, once and untimed: the seed's snapshot and
 * the whole workload, through a KinesisSink of its own slot.
 *   measureRoundTrips: the Kinesis sink with 30 ms injected into every PutRecords call (what a
 *   call to real Kinesis takes), against the same sink as it was before several calls in flight
 *   and bundling (one call in flight, one change a record), on bulk and on a hot row.
 */
import { NullSink } from '../capture/sink.ts';
import { KinesisSink, type KinesisSinkOptions } from '../capture/kinesis-sink.ts';
import { kinesisClient } from '../lib/aws.ts';
import type pg from '../lib/pg.ts';
import {
  createCaptureSlot,
  createRecvlogicalSlot,
  drainWithCapture,
  drainWithRecvlogical,
  kinesisCeiling,
  type CeilingResult,
  type DrainResult,
} from './capture-drain.ts';
import { delayedPutRecords } from './delayed-kinesis.ts';
import { createDatabase, createStream, deleteStream, type BenchEnvironment } from './environment.ts';
import { interleave, ratioSpread, type Spread } from './runs.ts';
import { prepareSource, workload, type Workload, type WorkloadName } from './workloads.ts';

interface WorkloadRun {
  workload: WorkloadName;
  changes: number;
  transactions: number;
  /** Seconds the source took to write the workload (context only: no reader was running). */
  writeSeconds: number;
}

/** A stream filled for downstream: the records it holds (the seed's snapshot reads included) and their mean size. */
export interface FilledStream {
  streamName: string;
  records: number;
  meanRecordBytes: number;
}

export interface DrainFigures extends WorkloadRun {
  /** One entry per turn, in the order they ran. */
  recvlogical: DrainResult[];
  nullSink: DrainResult[];
  /** Per-turn null sink / pg_recvlogical. */
  nullVsRecvlogical: Spread;
  filled: FilledStream | null;
}

export interface KinesisFigures extends WorkloadRun {
  kinesis: DrainResult[];
  ceiling: CeilingResult[];
  /** Per-turn Kinesis sink / PutRecords ceiling. */
  kinesisVsCeiling: Spread;
  meanRecordBytes: number;
}

/** One drain through a sink, with what the sink did. */
export interface SinkDrain extends DrainResult {
  putCalls: number;
  records: number;
  maxCallsInFlight: number;
}

export interface RoundTripRuns extends WorkloadRun {
  /** The producer as it was: one call in flight, one change a record. */
  oneCall: SinkDrain[];
  /** The producer as it is: several calls in flight, a row's changes bundled. */
  inFlight: SinkDrain[];
}

export interface RoundTripFigures {
  injectedMs: number;
  bulk: RoundTripRuns & { inFlightVsOneCall: Spread };
  /** A hot row: every change of one key, in one transaction. */
  hotKey: RoundTripRuns;
}

export interface CaptureFigures {
  drains: DrainFigures;
  kinesis: KinesisFigures;
  /** Bulk only. */
  roundTrips?: RoundTripFigures;
}

/** `slot` as a fresh copy of `origin` (an earlier copy dropped): every turn reads the same WAL from the same point. */
async function copySlot(db: pg.Client, origin: string, slot: string): Promise<void> {
  await db.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  await db.query('SELECT pg_copy_logical_replication_slot($1, $2)', [origin, slot]);
}

const origin = (slot: string) => `${slot}_origin`;

/** A database of its own with the seed; `slots` made (and copied as origins) before `w` is written. */
async function withWorkload<T>(
  env: BenchEnvironment,
  database: string,
  w: Workload,
  say: (line: string) => void,
  makeSlots: (url: string, db: pg.Client) => Promise<void>,
  measure: (url: string, db: pg.Client, run: WorkloadRun, endLsn: string) => Promise<T>,
): Promise<T> {
  const { url, client } = await createDatabase(env.source, database);
  try {
    await prepareSource(client);
    await makeSlots(url, client);
    say(`${database}: writing ${w.transactions.toLocaleString()} transaction(s), ${w.changes.toLocaleString()} changes`);
    const writeStarted = Date.now();
    await client.query(w.sql);
    const writeSeconds = (Date.now() - writeStarted) / 1000;
    const { rows } = await client.query('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    return await measure(url, client, { workload: w.name, changes: w.changes, transactions: w.transactions, writeSeconds }, rows[0].lsn);
  } finally {
    // the slots hold WAL and count against max_replication_slots: the next workload needs room
    await client
      .query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active')
      .catch(() => undefined);
    await client.end();
  }
}

export async function measureDrains(
  env: BenchEnvironment,
  name: WorkloadName,
  size: number,
  turns: number,
  say: (line: string) => void,
  fillStream?: string,
): Promise<DrainFigures> {
  const w = workload(name, size);
  const slots = { nullSink: `${name}_null`, recvlogical: `${name}_recvlogical`, fill: `${name}_fill` };
  const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  const fillSink = fillStream ? new KinesisSink({ client: kinesis, streamName: fillStream }) : null;
  try {
    return await withWorkload(
      env,
      `${name}_drains`,
      w,
      say,
      async (url, db) => {
        await createCaptureSlot(url, slots.nullSink, new NullSink());
        await copySlot(db, slots.nullSink, origin(slots.nullSink));
        await createRecvlogicalSlot(url, origin(slots.recvlogical));
        if (fillStream && fillSink) {
          await createStream(env, fillStream);
          await createCaptureSlot(url, slots.fill, fillSink);
        }
      },
      async (url, db, run, endLsn) => {
        const drains = await interleave(
          turns,
          async (turn) => {
            say(`${name}: turn ${turn + 1}/${turns}: pg_recvlogical draining`);
            await copySlot(db, origin(slots.recvlogical), slots.recvlogical);
            return drainWithRecvlogical(url, slots.recvlogical, endLsn, w.changes);
          },
          async (turn) => {
            say(`${name}: turn ${turn + 1}/${turns}: capture → null sink draining`);
            if (turn > 0) await copySlot(db, origin(slots.nullSink), slots.nullSink);
            return drainWithCapture(url, slots.nullSink, new NullSink(), w.changes);
          },
        );
        let filled: FilledStream | null = null;
        if (fillStream && fillSink) {
          say(`${name}: filling ${fillStream} for downstream (not timed)`);
          const sink = new KinesisSink({ client: kinesis, streamName: fillStream });
          await drainWithCapture(url, slots.fill, sink, w.changes, { heartbeatAtEnd: true });
          const records = fillSink.metrics.records + sink.metrics.records;
          filled = { streamName: fillStream, records, meanRecordBytes: Math.round((fillSink.metrics.bytes + sink.metrics.bytes) / records) };
        }
        const rates = (d: DrainResult[]) => d.map((x) => x.changesPerSecond);
        return { ...run, recvlogical: drains.a, nullSink: drains.b, nullVsRecvlogical: ratioSpread(rates(drains.b), rates(drains.a)), filled };
      },
    );
  } finally {
    kinesis.destroy();
  }
}

export async function measureKinesis(
  env: BenchEnvironment,
  name: WorkloadName,
  size: number,
  turns: number,
  say: (line: string) => void,
): Promise<KinesisFigures> {
  const w = workload(name, size);
  const slot = `${name}_kinesis`;
  const ceilingStream = `bench-${name}-ceiling`;
  const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  try {
    return await withWorkload(
      env,
      `${name}_kinesis`,
      w,
      say,
      async (url, db) => {
        await createCaptureSlot(url, slot, new NullSink());
        await copySlot(db, slot, origin(slot));
      },
      async (url, db, run) => {
        let meanRecordBytes = 0;
        await createStream(env, ceilingStream);
        const turnsRun = await interleave(
          turns,
          async (turn) => {
            say(`${name}: turn ${turn + 1}/${turns}: capture → Kinesis draining`);
            const stream = `bench-${name}-${turn + 1}`;
            await createStream(env, stream);
            if (turn > 0) await copySlot(db, origin(slot), slot);
            const sink = new KinesisSink({ client: kinesis, streamName: stream });
            const drained = await drainWithCapture(url, slot, sink, w.changes);
            meanRecordBytes = Math.round(sink.metrics.bytes / sink.metrics.records);
            await deleteStream(env, stream);
            return drained;
          },
          async (turn) => {
            say(`${name}: turn ${turn + 1}/${turns}: PutRecords ceiling`);
            return kinesisCeiling(kinesis, ceilingStream, meanRecordBytes);
          },
        );
        await deleteStream(env, ceilingStream);
        return {
          ...run,
          kinesis: turnsRun.a,
          ceiling: turnsRun.b,
          kinesisVsCeiling: ratioSpread(
            turnsRun.a.map((d) => d.changesPerSecond),
            turnsRun.b.map((c) => c.recordsPerSecond),
          ),
          meanRecordBytes,
        };
      },
    );
  } finally {
    kinesis.destroy();
  }
}

export const INJECTED_MS = 30;
const ONE_CALL: Partial<KinesisSinkOptions> = { maxCallsInFlight: 1, maxEventsPerRecord: 1, hashBuckets: 0 };

/**
 * Capture → Kinesis with INJECTED_MS added to every PutRecords call: bulk in interleaved turns of
 * the producer as it was and as it is, then the hot row (`hotKeyUpdates` updates of one row in one
 * transaction) `turns` times as it is and once as it was (a round trip a change: about 30 s).
 */
export async function measureRoundTrips(
  env: BenchEnvironment,
  bulkRows: number,
  hotKeyUpdates: number,
  turns: number,
  say: (line: string) => void,
): Promise<RoundTripFigures> {
  const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  const delayed = delayedPutRecords(kinesis, INJECTED_MS);
  let streams = 0;
  let drains = 0;
  /** A drain of `slot` (a fresh copy of its origin after the first) into a new stream of its own. */
  const drain = async (url: string, db: pg.Client, slot: string, changes: number, options: Partial<KinesisSinkOptions>): Promise<SinkDrain> => {
    if (drains++ > 0) await copySlot(db, origin(slot), slot);
    const stream = `bench-round-trips-${++streams}`;
    await createStream(env, stream);
    const sink = new KinesisSink({ client: delayed, streamName: stream, ...options });
    const drained = await drainWithCapture(url, slot, sink, changes);
    await deleteStream(env, stream);
    const { putCalls, records, maxCallsInFlight } = sink.metrics;
    return { ...drained, putCalls, records, maxCallsInFlight };
  };
  const measure = async (name: 'bulk' | 'hotkey', size: number, run: (url: string, db: pg.Client, w: WorkloadRun, slot: string) => Promise<RoundTripRuns>) => {
    const w = workload(name, size);
    const slot = `${name}_round_trips`;
    drains = 0;
    return withWorkload(
      env,
      `${name}_round_trips`,
      w,
      say,
      async (url, db) => {
        await createCaptureSlot(url, slot, new NullSink());
        await copySlot(db, slot, origin(slot));
      },
      (url, db, w) => run(url, db, w, slot),
    );
  };
  try {
    const bulk = await measure('bulk', bulkRows, async (url, db, w, slot) => {
      const runs = await interleave(
        turns,
        (turn) => {
          say(`bulk, ${INJECTED_MS} ms a call: turn ${turn + 1}/${turns}: one call in flight, one change a record`);
          return drain(url, db, slot, w.changes, ONE_CALL);
        },
        (turn) => {
          say(`bulk, ${INJECTED_MS} ms a call: turn ${turn + 1}/${turns}: several calls in flight, bundled`);
          return drain(url, db, slot, w.changes, {});
        },
      );
      return { ...w, oneCall: runs.a, inFlight: runs.b };
    });
    const hotKey = await measure('hotkey', hotKeyUpdates, async (url, db, w, slot) => {
      const inFlight: SinkDrain[] = [];
      for (let turn = 0; turn < turns; turn++) {
        say(`hot row, ${INJECTED_MS} ms a call: turn ${turn + 1}/${turns}: several calls in flight, bundled`);
        inFlight.push(await drain(url, db, slot, w.changes, {}));
      }
      say(`hot row, ${INJECTED_MS} ms a call: one call in flight, one change a record (a round trip a change)`);
      return { ...w, inFlight, oneCall: [await drain(url, db, slot, w.changes, ONE_CALL)] };
    });
    const rates = (d: DrainResult[]) => d.map((x) => x.changesPerSecond);
    return { injectedMs: INJECTED_MS, bulk: { ...bulk, inFlightVsOneCall: ratioSpread(rates(bulk.inFlight), rates(bulk.oneCall)) }, hotKey };
  } finally {
    kinesis.destroy();
  }
}
