/**
 * Capture throughput, measured the same way for totes-cdc and for its reference: every slot is
 * created before the workload, the workload is committed, and then each reader drains the same
 * WAL alone (one after another, so they never share the two cores).
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { PutRecordsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { BroadcastEvent, ChangeEvent } from '../formats/change-event.ts';
import { CaptureService, DEFAULT_CAPTURE_CONFIG } from '../capture/capture-service.ts';
import type { ChangeSink } from '../capture/sink.ts';
import { sleep } from '../lib/retry.ts';
import { PUBLICATION } from './workloads.ts';
import { recvlogicalPath } from './environment.ts';

/** Passes events through to a sink, noting when the n-th was accepted. */
export class TimedSink implements ChangeSink {
  private waiters: { through: number; resolve: (at: number) => void }[] = [];

  constructor(readonly inner: ChangeSink) {
    inner.onAccepted((through) => {
      const at = performance.now();
      const waiting = this.waiters;
      this.waiters = waiting.filter((w) => w.through > through);
      for (const w of waiting) if (w.through <= through) w.resolve(at);
    });
  }

  get writtenThrough(): number {
    return this.inner.writtenThrough;
  }
  get acceptedThrough(): number {
    return this.inner.acceptedThrough;
  }

  write(event: ChangeEvent): Promise<number> {
    return this.inner.write(event);
  }

  broadcast(event: BroadcastEvent): Promise<number> {
    return this.inner.broadcast(event);
  }
  onAccepted(listener: (through: number) => void): void {
    this.inner.onAccepted(listener);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Resolves with the time the sink has accepted `count` events. */
  accepted(count: number): Promise<number> {
    if (this.inner.acceptedThrough >= count - 1) return Promise.resolve(performance.now());
    return new Promise((resolve) => this.waiters.push({ through: count - 1, resolve }));
  }
}

function captureService(sourceUrl: string, slotName: string, sink: ChangeSink): CaptureService {
  return new CaptureService({ ...DEFAULT_CAPTURE_CONFIG, sourceUrl, slotName, publicationName: PUBLICATION, heartbeatMs: 0, createPrerequisites: true }, sink);
}

async function until(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Creates the capture service's slot the way the service does it (slot, then streaming with the
 * seed's snapshot) and stops it once the snapshot is done, so the workload's WAL waits in the slot.
 */
export async function createCaptureSlot(sourceUrl: string, slotName: string, sink: ChangeSink): Promise<void> {
  const service = captureService(sourceUrl, slotName, sink);
  const running = service.run();
  await Promise.race([until('capture to stream its snapshot', () => service.metrics.state === 'streaming' && !service.snapshotPending, 60_000), running]);
  await sink.flush();
  await service.stop();
  await running;
}

export interface DrainResult {
  changes: number;
  seconds: number;
  changesPerSecond: number;
}

/**
 * Streams the slot's backlog into `sink`, timed from the service's start to the last event
 * accepted. Not from the first event: Postgres decodes a whole transaction before it sends its
 * first change, and that time is inside pg_recvlogical's figure too.
 */
export async function drainWithCapture(
  sourceUrl: string,
  slotName: string,
  sink: ChangeSink,
  changes: number,
  { heartbeatAtEnd = false } = {},
): Promise<DrainResult> {
  const timed = new TimedSink(sink);
  const service = captureService(sourceUrl, slotName, timed);
  const started = performance.now();
  const running = service.run();
  const stoppedEarly = running.then(() => {
    throw new Error(`capture on ${slotName} stopped before draining ${changes} changes`);
  });
  const acceptedAt = await Promise.race([timed.accepted(changes), stoppedEarly]);
  // a stream filled for downstream ends with a heartbeat on every shard: the warehouse loaded from it is then complete to past
  // the whole workload (its watermark), which the as-of question reads at
  if (heartbeatAtEnd) {
    await service.emitHeartbeat();
    await until('the closing heartbeat to be sent', () => service.metrics.heartbeats > 0, 30_000);
  }
  await service.stop();
  await running;
  if (service.metrics.changes !== changes) throw new Error(`capture on ${slotName} read ${service.metrics.changes} changes, the workload wrote ${changes}`);
  const seconds = (acceptedAt - started) / 1000;
  return { changes, seconds, changesPerSecond: changes / seconds };
}

function runRecvlogical(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(recvlogicalPath(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`pg_recvlogical ${args.join(' ')} exited ${code}: ${stderr.trim()}`))));
  });
}

export function createRecvlogicalSlot(sourceUrl: string, slotName: string): Promise<void> {
  return runRecvlogical(['-d', sourceUrl, '--slot', slotName, '--create-slot', '-P', 'pgoutput']);
}

/**
 * pg_recvlogical into /dev/null with the options the capture service subscribes with, until
 * `endLsn`. Timed from spawn to exit, so its connection start-up (a few ms) counts against it.
 */
export async function drainWithRecvlogical(sourceUrl: string, slotName: string, endLsn: string, changes: number): Promise<DrainResult> {
  const started = performance.now();
  await runRecvlogical([
    '-d',
    sourceUrl,
    '--slot',
    slotName,
    '--start',
    '--no-loop',
    '-f',
    '/dev/null',
    '-F',
    '0',
    '--endpos',
    endLsn,
    '-o',
    'proto_version=1',
    '-o',
    `publication_names=${PUBLICATION}`,
    '-o',
    'messages=true',
  ]);
  const seconds = (performance.now() - started) / 1000;
  return { changes, seconds, changesPerSecond: changes / seconds };
}

export interface CeilingResult {
  records: number;
  seconds: number;
  recordsPerSecond: number;
}

/** How long a ceiling turn sends for: long enough that start-up and one slow call do not decide it. */
const CEILING_SECONDS = 2.5;

/**
 * The emulator's own ceiling: 500-record PutRecords of `recordBytes`-byte records, one call in
 * flight as the KinesisSink keeps it, spread over every shard, for CEILING_SECONDS.
 */
export async function kinesisCeiling(client: KinesisClient, streamName: string, recordBytes: number): Promise<CeilingResult> {
  const data = Buffer.from(`${'x'.repeat(Math.max(1, recordBytes - 1))}\n`);
  const started = performance.now();
  let accepted = 0;
  for (let sent = 0; performance.now() - started < CEILING_SECONDS * 1000; sent += 500) {
    const batch = Array.from({ length: 500 }, (_, i) => ({ Data: data, PartitionKey: `sales_order:${sent + i}` }));
    const out = await client.send(new PutRecordsCommand({ StreamName: streamName, Records: batch }));
    accepted += batch.length - (out.FailedRecordCount ?? 0);
  }
  const seconds = (performance.now() - started) / 1000;
  return { records: accepted, seconds, recordsPerSecond: accepted / seconds };
}
