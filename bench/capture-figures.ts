/** The capture figures of one workload: null sink and Kinesis beside pg_recvlogical, on the same WAL. */
import { NullSink } from '../capture/sink.ts';
import { KinesisSink } from '../capture/kinesis-sink.ts';
import { kinesisClient } from '../lib/aws.ts';
import { createCaptureSlot, createRecvlogicalSlot, drainWithCapture, drainWithRecvlogical, type DrainResult } from './capture-drain.ts';
import { createDatabase, STREAMS, type BenchEnvironment } from './environment.ts';
import { prepareSource, workload, type WorkloadName } from './workloads.ts';

export interface CaptureFigures {
  workload: WorkloadName;
  changes: number;
  transactions: number;
  /** Seconds the source took to write the workload (context only: no reader was running). */
  writeSeconds: number;
  recvlogical: DrainResult;
  nullSink: DrainResult;
  kinesis: DrainResult;
  /** Records the Kinesis stream holds afterwards (the seed's snapshot reads included) and their mean size. */
  streamRecords: number;
  meanRecordBytes: number;
}

export async function measureCapture(env: BenchEnvironment, name: WorkloadName, size: number, say: (line: string) => void): Promise<CaptureFigures> {
  const { url, client } = await createDatabase(env.source, name);
  const w = workload(name, size);
  const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  try {
    await prepareSource(client);
    const slots = { nullSink: `${name}_null`, kinesis: `${name}_kinesis`, recvlogical: `${name}_recvlogical` };
    const snapshotSink = new KinesisSink({ client: kinesis, streamName: STREAMS[name] });
    await createCaptureSlot(url, slots.nullSink, new NullSink());
    await createCaptureSlot(url, slots.kinesis, snapshotSink);
    await createRecvlogicalSlot(url, slots.recvlogical);

    say(`${name}: writing ${w.transactions.toLocaleString()} transaction(s), ${w.changes.toLocaleString()} changes`);
    const writeStarted = Date.now();
    await client.query(w.sql);
    const writeSeconds = (Date.now() - writeStarted) / 1000;
    const { rows } = await client.query('SELECT pg_current_wal_insert_lsn()::text AS lsn');

    say(`${name}: pg_recvlogical draining`);
    const recvlogical = await drainWithRecvlogical(url, slots.recvlogical, rows[0].lsn, w.changes);
    say(`${name}: capture → null sink draining`);
    const nullSink = await drainWithCapture(url, slots.nullSink, new NullSink(), w.changes);
    say(`${name}: capture → Kinesis draining`);
    const sink = new KinesisSink({ client: kinesis, streamName: STREAMS[name] });
    const kinesisDrain = await drainWithCapture(url, slots.kinesis, sink, w.changes);
    const records = snapshotSink.metrics.records + sink.metrics.records;
    const bytes = snapshotSink.metrics.bytes + sink.metrics.bytes;
    return {
      workload: name,
      changes: w.changes,
      transactions: w.transactions,
      writeSeconds,
      recvlogical,
      nullSink,
      kinesis: kinesisDrain,
      streamRecords: records,
      meanRecordBytes: Math.round(bytes / records),
    };
  } finally {
    await client.end();
    kinesis.destroy();
  }
}
