/**
 * The capture figures of one workload, each beside its reference, in interleaved turns:
 *   null sink against pg_recvlogical, on the same WAL from the same point (each turn drains a
 *   fresh copy of a slot made before the workload);
 *   Kinesis sink against the emulator's PutRecords ceiling, each Kinesis turn into a stream of its own.
 * The first Kinesis turn's stream (the seed's snapshot and the workload) is what downstream reads.
 */
import { NullSink } from '../capture/sink.ts';
import { KinesisSink } from '../capture/kinesis-sink.ts';
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
import { createDatabase, createStream, deleteStream, type BenchEnvironment } from './environment.ts';
import { interleave, ratioSpread, type Spread } from './runs.ts';
import { prepareSource, workload, type WorkloadName } from './workloads.ts';

export interface CaptureFigures {
  workload: WorkloadName;
  changes: number;
  transactions: number;
  /** Seconds the source took to write the workload (context only: no reader was running). */
  writeSeconds: number;
  /** One entry per turn, in the order they ran. */
  recvlogical: DrainResult[];
  nullSink: DrainResult[];
  kinesis: DrainResult[];
  ceiling: CeilingResult[];
  /** Per-turn ratios: null sink / pg_recvlogical and Kinesis sink / PutRecords ceiling. */
  nullVsRecvlogical: Spread;
  kinesisVsCeiling: Spread;
  /** The stream downstream reads: records it holds (the seed's snapshot reads included) and their mean size. */
  streamName: string;
  streamRecords: number;
  meanRecordBytes: number;
}

/** `slot` as a fresh copy of `origin` (an earlier copy dropped): every turn reads the same WAL from the same point. */
async function copySlot(db: pg.Client, origin: string, slot: string): Promise<void> {
  await db.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  await db.query('SELECT pg_copy_logical_replication_slot($1, $2)', [origin, slot]);
}

export async function measureCapture(
  env: BenchEnvironment,
  name: WorkloadName,
  size: number,
  turns: number,
  say: (line: string) => void,
): Promise<CaptureFigures> {
  const { url, client } = await createDatabase(env.source, name);
  const w = workload(name, size);
  const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  const streams = Array.from({ length: turns }, (_, i) => `bench-${name}-${i + 1}`);
  const slots = { nullSink: `${name}_null`, kinesis: `${name}_kinesis`, recvlogical: `${name}_recvlogical` };
  const origin = (slot: string) => `${slot}_origin`;
  try {
    await prepareSource(client);
    await createStream(env, streams[0]);
    const snapshotSink = new KinesisSink({ client: kinesis, streamName: streams[0] });
    await createCaptureSlot(url, slots.nullSink, new NullSink());
    await createCaptureSlot(url, slots.kinesis, snapshotSink);
    await createRecvlogicalSlot(url, origin(slots.recvlogical));
    for (const slot of [slots.nullSink, slots.kinesis]) await copySlot(client, slot, origin(slot));

    say(`${name}: writing ${w.transactions.toLocaleString()} transaction(s), ${w.changes.toLocaleString()} changes`);
    const writeStarted = Date.now();
    await client.query(w.sql);
    const writeSeconds = (Date.now() - writeStarted) / 1000;
    const { rows } = await client.query('SELECT pg_current_wal_insert_lsn()::text AS lsn');

    const drains = await interleave(
      turns,
      async (turn) => {
        say(`${name}: turn ${turn + 1}/${turns}: pg_recvlogical draining`);
        await copySlot(client, origin(slots.recvlogical), slots.recvlogical);
        return drainWithRecvlogical(url, slots.recvlogical, rows[0].lsn, w.changes);
      },
      async (turn) => {
        say(`${name}: turn ${turn + 1}/${turns}: capture → null sink draining`);
        if (turn > 0) await copySlot(client, origin(slots.nullSink), slots.nullSink);
        return drainWithCapture(url, slots.nullSink, new NullSink(), w.changes);
      },
    );
    let records = snapshotSink.metrics.records;
    let bytes = snapshotSink.metrics.bytes;
    const ceilingStream = `bench-${name}-ceiling`;
    await createStream(env, ceilingStream);
    const toStream = await interleave(
      turns,
      async (turn) => {
        say(`${name}: turn ${turn + 1}/${turns}: capture → Kinesis draining`);
        if (turn > 0) {
          await createStream(env, streams[turn]);
          await copySlot(client, origin(slots.kinesis), slots.kinesis);
        }
        const sink = new KinesisSink({ client: kinesis, streamName: streams[turn] });
        const drained = await drainWithCapture(url, slots.kinesis, sink, w.changes);
        if (turn === 0) {
          records += sink.metrics.records;
          bytes += sink.metrics.bytes;
        } else await deleteStream(env, streams[turn]);
        return drained;
      },
      async (turn) => {
        say(`${name}: turn ${turn + 1}/${turns}: PutRecords ceiling`);
        return kinesisCeiling(kinesis, ceilingStream, Math.round(bytes / records));
      },
    );
    await deleteStream(env, ceilingStream);
    return {
      workload: name,
      changes: w.changes,
      transactions: w.transactions,
      writeSeconds,
      recvlogical: drains.a,
      nullSink: drains.b,
      kinesis: toStream.a,
      ceiling: toStream.b,
      nullVsRecvlogical: ratioSpread(
        drains.b.map((d) => d.changesPerSecond),
        drains.a.map((d) => d.changesPerSecond),
      ),
      kinesisVsCeiling: ratioSpread(
        toStream.a.map((d) => d.changesPerSecond),
        toStream.b.map((d) => d.recordsPerSecond),
      ),
      streamName: streams[0],
      streamRecords: records,
      meanRecordBytes: Math.round(bytes / records),
    };
  } finally {
    // the slots hold WAL and count against max_replication_slots: the next workload needs room
    await client
      .query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active')
      .catch(() => undefined);
    await client.end();
    kinesis.destroy();
  }
}
