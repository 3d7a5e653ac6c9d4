/** Test helper: a random workload captured from a real WAL into memory, with the capture's own heartbeats. */
import { expect } from 'vitest';
import { CaptureService, DEFAULT_CAPTURE_CONFIG } from '../capture/capture-service.ts';
import { lsnToBigInt, type StreamEvent } from '../formats/change-event.ts';
import { poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { RandomWorkload } from '../totesys/random-workload.ts';
import { MemorySink } from './memory-sink.ts';

/**
 * Capture everything `operations` random transactions do, from a snapshot in small chunks (so it
 * runs while the workload changes the rows it reads), until a heartbeat after them has come back.
 * `heartbeatMs` 0: that last heartbeat only.
 */
export async function captureWorkload(
  sourceUrl: string,
  opts: { seed: number; operations: number; heartbeatMs?: number; slot: string },
): Promise<StreamEvent[]> {
  const sink = new MemorySink();
  const capture = new CaptureService(
    { ...DEFAULT_CAPTURE_CONFIG, sourceUrl, slotName: opts.slot, heartbeatMs: opts.heartbeatMs ?? 0, createPrerequisites: true, snapshotChunkRows: 7 },
    sink,
  );
  const running = capture.run();
  while (capture.metrics.state !== 'streaming') await sleep(20);
  const pool = poolFor(sourceUrl, 2);
  const workload = new RandomWorkload(pool, opts.seed);
  await workload.run(opts.operations);
  while (capture.snapshotPending) await sleep(20);
  const marker = await capture.emitHeartbeat();
  // the heartbeat's commit LSN is after the message's own LSN
  while (!sink.events.some((e) => e.kind === 'heartbeat' && lsnToBigInt(e.source.lsn) >= lsnToBigInt(marker))) await sleep(20);
  await capture.stop();
  await running;
  await pool.end();
  expect(workload.committed).toBeGreaterThan(opts.operations / 2);
  return sink.events;
}
