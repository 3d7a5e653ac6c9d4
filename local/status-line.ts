/**
 * The live status line: changes captured, events in the stream, rows loaded, slot lag and
 * freshness (source commit → visible in the warehouse), and a gap when a shard is held at a
 * record no micro-batch holds. Redrawn in place on a terminal; a plain line every few seconds
 * otherwise (CI logs).
 */
import { readSlotHealth } from '../capture/slot-health.ts';
import type { DeadLetterNote } from '../processors/processor.ts';
import type { Pipeline } from './pipeline.ts';
import type pg from '../lib/pg.ts';

export interface StatusSnapshot {
  captured: number;
  /** Events Kinesis accepted (a record may bundle several changes of one row). */
  streamEvents: number;
  batches: number;
  rowsLoaded: number;
  deadLetters: number;
  /** The newest dead letter's row and reason (no value), to say what to look for under dead-letter/. */
  newestDeadLetter?: DeadLetterNote | null;
  slotLagBytes: number | null;
  freshnessSeconds: number | null;
  /** Shards held at a gap, and how long the oldest missing record has been missing. */
  gapShards: number;
  gapSeconds: number | null;
  /** The first gap the loader found: the shard and the first record no micro-batch holds. */
  gap?: { shard: string; missing: string } | null;
  simulated?: number;
}

export async function snapshotStatus(p: Pipeline, source: pg.Pool, slotName = 'totes_cdc'): Promise<StatusSnapshot> {
  const [slot, fresh] = await Promise.all([readSlotHealth(source, slotName).catch(() => null), p.loader.freshness().catch(() => null)]);
  return {
    captured: p.capture.metrics.changes + p.capture.metrics.snapshotRows,
    streamEvents: p.sink.metrics.events,
    batches: p.processor.metrics.batches,
    rowsLoaded: p.loader.metrics.rows,
    deadLetters: p.processor.metrics.deadLetters,
    newestDeadLetter: p.processor.newestDeadLetters[0] ?? null,
    slotLagBytes: slot && slot.walStatus !== 'missing' ? slot.lagBytes : null,
    freshnessSeconds: fresh?.lagSeconds ?? null,
    gapShards: fresh?.gapShards ?? 0,
    gapSeconds: fresh?.gapSeconds ?? null,
    gap: p.loader.status.gaps[0] ?? null,
  };
}

const n = (x: number) => x.toLocaleString('en-GB');
const duration = (s: number) =>
  s < 60 ? `${s.toFixed(1)}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s` : `${(s / 3600).toFixed(1)}h`;

export function formatStatus(s: StatusSnapshot): string {
  const lag = s.freshnessSeconds == null ? '–' : duration(s.freshnessSeconds);
  const slot = s.slotLagBytes == null ? '–' : `${n(Math.max(0, Math.round(s.slotLagBytes / 1024)))} KiB`;
  return [
    s.simulated != null ? `simulated ${n(s.simulated)}` : null,
    `captured ${n(s.captured)}`,
    `in stream ${n(s.streamEvents)}`,
    `batches ${n(s.batches)}`,
    `rows loaded ${n(s.rowsLoaded)}`,
    `slot lag ${slot}`,
    `freshness ${lag}`,
    s.gapShards ? `GAP on ${s.gapShards} shard${s.gapShards > 1 ? 's' : ''} for ${duration(s.gapSeconds ?? 0)} (watermark held)${gapHint(s.gap)}` : null,
    s.deadLetters ? `dead letters ${n(s.deadLetters)}${newest(s.newestDeadLetter)}` : null,
  ]
    .filter(Boolean)
    .join(' │ ');
}

function newest(d: StatusSnapshot['newestDeadLetter']): string {
  return d ? ` (newest: ${d.table ?? 'unknown table'}${d.key === null ? '' : ` ${d.key}`}: ${d.reason})` : '';
}

/** What closes the gap, when the loader knows where it is. */
function gapHint(gap: StatusSnapshot['gap']): string {
  return gap ? `: totes reprocess --shard ${gap.shard} --from ${gap.missing}` : '';
}

/** Redraws the status every second until stopped. */
export class StatusLine {
  private timer: NodeJS.Timeout | null = null;
  private lastPlain = 0;
  constructor(
    private readonly read: () => Promise<string>,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.draw(), 1_000);
  }

  private async draw(): Promise<void> {
    const text = await this.read().catch((err) => `status unavailable: ${(err as Error).message}`);
    if (this.out.isTTY) {
      this.out.write(`\r\x1b[2K${text.slice(0, (this.out.columns ?? 200) - 1)}`);
    } else if (Date.now() - this.lastPlain >= 5_000) {
      this.lastPlain = Date.now();
      this.out.write(`${text}\n`);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.out.isTTY) this.out.write('\n');
  }
}
