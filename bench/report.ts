/** The bench report: JSON keys that compare across commits, and the table a person reads. */
import type { CaptureFigures } from './capture-figures.ts';
import type { DownstreamFigures } from './downstream.ts';
import type { Machine } from './environment.ts';
import type { FreshnessFigures } from './freshness.ts';
import type { RssFigures } from './capture-rss.ts';

export interface WorkloadCapture {
  capture_null_changes_per_s: number | null;
  recvlogical_changes_per_s: number | null;
  capture_kinesis_changes_per_s: number | null;
}

export interface BenchReport extends WorkloadCapture {
  mode: 'quick' | 'full';
  command: string;
  at: string;
  machine: Machine;
  sizes: Record<string, number>;
  bulk: WorkloadCapture;
  oltp: WorkloadCapture;
  kinesis_ceiling_records_per_s: number | null;
  processor_events_per_s: number | null;
  loader_rows_per_s: number | null;
  copy_rows_per_s: number | null;
  e2e_p50_ms: number | null;
  e2e_p95_ms: number | null;
  e2e_p99_ms: number | null;
  replay_events_per_s: number | null;
  capture_rss_mb_max: number | null;
  /** Everything measured, for reading what limits a figure. */
  details: {
    capture: Partial<Record<'bulk' | 'oltp', CaptureFigures>>;
    downstream: DownstreamFigures | null;
    freshness: FreshnessFigures | null;
    rss: RssFigures | null;
  };
}

export function workloadCapture(c: CaptureFigures | undefined): WorkloadCapture {
  return {
    capture_null_changes_per_s: c ? Math.round(c.nullSink.changesPerSecond) : null,
    recvlogical_changes_per_s: c ? Math.round(c.recvlogical.changesPerSecond) : null,
    capture_kinesis_changes_per_s: c ? Math.round(c.kinesis.changesPerSecond) : null,
  };
}

const n = (v: number | null | undefined, digits = 0) =>
  v == null ? '—' : v.toLocaleString('en-GB', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ratio = (a: number | null, b: number | null) => (a == null || b == null ? null : a / b);
const verdict = (ok: boolean | null) => (ok == null ? '' : ok ? 'met' : 'NOT met');

export function formatTable(r: BenchReport): string {
  const rows: [string, string, string, string, string][] = [];
  for (const w of ['bulk', 'oltp'] as const) {
    const c = r[w];
    const q = ratio(c.capture_null_changes_per_s, c.recvlogical_changes_per_s);
    rows.push([
      `capture → null sink, ${w} (changes/s)`,
      n(c.capture_null_changes_per_s),
      `pg_recvlogical ${n(c.recvlogical_changes_per_s)}`,
      n(q, 2),
      `≥ 0.80: ${verdict(q == null ? null : q >= 0.8)}`,
    ]);
  }
  for (const w of ['bulk', 'oltp'] as const) {
    const c = r[w];
    rows.push([
      `capture → Kinesis, ${w} (changes/s)`,
      n(c.capture_kinesis_changes_per_s),
      `PutRecords ceiling ${n(r.kinesis_ceiling_records_per_s)}`,
      n(ratio(c.capture_kinesis_changes_per_s, r.kinesis_ceiling_records_per_s), 2),
      'report',
    ]);
  }
  rows.push(['processor, oltp (events/s)', n(r.processor_events_per_s), '—', '', 'report']);
  const lq = ratio(r.loader_rows_per_s, r.copy_rows_per_s);
  const loaderOk = lq == null ? null : lq >= 0.3 && r.loader_rows_per_s! >= 100_000;
  rows.push(['loader, oltp (rows/s)', n(r.loader_rows_per_s), `COPY ${n(r.copy_rows_per_s)}`, n(lq, 2), `≥ 0.30 and ≥ 100,000: ${verdict(loaderOk)}`]);
  const f = r.details.freshness;
  rows.push([
    `e2e freshness at ${n(f?.rate)} changes/s (ms)`,
    `p50 ${n(r.e2e_p50_ms)} p95 ${n(r.e2e_p95_ms)} p99 ${n(r.e2e_p99_ms)}`,
    f ? `simulator reached ${n(f.achievedRate)}/s` : '—',
    '',
    `p99 ≤ 2,000: ${verdict(r.e2e_p99_ms == null ? null : r.e2e_p99_ms <= 2000)}`,
  ]);
  rows.push([
    'replay rebuild (events/s)',
    n(r.replay_events_per_s),
    '—',
    '',
    `≥ 50,000: ${verdict(r.replay_events_per_s == null ? null : r.replay_events_per_s >= 50_000)}`,
  ]);
  const rss = r.details.rss;
  rows.push([
    rss ? `capture peak RSS: ${n(rss.bigTransaction.rows)}-row tx, ${rss.stall.seconds} s stall (MB)` : 'capture peak RSS (MB)',
    n(r.capture_rss_mb_max),
    rss ? `stall: ${n(rss.stall.startMb)} → max ${n(rss.stall.maxMb)}` : '—',
    '',
    `≤ 256, flat: ${verdict(r.capture_rss_mb_max == null ? null : r.capture_rss_mb_max <= 256)}`,
  ]);
  const header: [string, string, string, string, string] = ['figure', 'totes-cdc', 'reference, same run', 'ratio', 'goal'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
