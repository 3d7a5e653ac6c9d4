/**
 * The bench report: JSON keys that compare across commits (each figure the median of its turns),
 * the spread of every figure and ratio, and the table a person reads.
 */
import type { CaptureFigures } from './capture-figures.ts';
import { CHAOS_LONG_KILLS, type ChaosFigures } from './chaos.ts';
import type { DownstreamFigures } from './downstream.ts';
import type { Machine } from './environment.ts';
import { describeShape, type DeployedShape } from './deployed-shape.ts';
import type { FreshnessFigures } from './freshness.ts';
import type { RssFigures } from './capture-rss.ts';
import { spread, type Spread } from './runs.ts';

export interface WorkloadCapture {
  capture_null_changes_per_s: number | null;
  recvlogical_changes_per_s: number | null;
  capture_kinesis_changes_per_s: number | null;
  kinesis_ceiling_records_per_s: number | null;
}

/** Capture → Kinesis with 30 ms injected into every PutRecords call (bench/capture-figures.ts measureRoundTrips). */
export interface RoundTripKeys {
  kinesis_30ms_bulk_changes_per_s: number | null;
  kinesis_30ms_bulk_one_call_changes_per_s: number | null;
  /** 1,000 updates of one row in one transaction: seconds from capture start to the last accepted, and PutRecords calls. */
  hot_key_30ms_seconds: number | null;
  hot_key_30ms_put_calls: number | null;
  hot_key_30ms_one_call_seconds: number | null;
  hot_key_30ms_one_call_put_calls: number | null;
}

export interface FreshnessRuns {
  rate: number;
  runs: FreshnessFigures[];
}

/** The e2e freshness in the production settings, and the settings it ran with. */
export interface DeployedFreshnessRuns extends FreshnessRuns {
  shape: DeployedShape;
}

export interface BenchReport extends WorkloadCapture, RoundTripKeys {
  mode: 'quick' | 'full';
  command: string;
  at: string;
  machine: Machine;
  /** Load average (1, 5, 15 min) at the start and the end: how busy the shared machine was. */
  load: { start: number[]; end: number[] };
  sizes: Record<string, number>;
  bulk: WorkloadCapture;
  oltp: WorkloadCapture;
  processor_events_per_s: number | null;
  processor_events_per_cpu_s: number | null;
  loader_rows_per_s: number | null;
  /** The same micro-batches loaded as a backlog, the stream asked at real Kinesis's pace (bench/downstream.ts catchUpTurn). */
  loader_catchup_rows_per_s: number | null;
  /** Minutes that rate takes to drain 72 hours of changes at 1,000 a second (bench/downstream.ts backlogDrainMinutes). */
  loader_catchup_72h_minutes: number | null;
  copy_rows_per_s: number | null;
  /** An as-of question (bench/downstream.ts AS_OF_QUESTION) over the loaded warehouse, and the dimension histories' storage. */
  as_of_query_ms: number | null;
  history_bytes_per_million_changes: number | null;
  e2e_p50_ms: number | null;
  e2e_p95_ms: number | null;
  e2e_p99_ms: number | null;
  e2e_high_rate_p99_ms: number | null;
  /** The local shape's watermark freshness (totes_freshness) at 1,000 changes/s, sampled every 100 ms. */
  e2e_watermark_p50_ms: number | null;
  e2e_watermark_p95_ms: number | null;
  e2e_watermark_p99_ms: number | null;
  /** The production settings (bench/deployed-shape.ts) at 1,000 changes/s: change visibility, and the watermark freshness. */
  e2e_prod_p50_ms: number | null;
  e2e_prod_p95_ms: number | null;
  e2e_prod_p99_ms: number | null;
  e2e_prod_watermark_p50_ms: number | null;
  e2e_prod_watermark_p95_ms: number | null;
  e2e_prod_watermark_p99_ms: number | null;
  replay_events_per_s: number | null;
  capture_rss_mb_max: number | null;
  /** The chaos test's long form (--chaos, --full); null when not run. */
  chaos: ChaosFigures | null;
  /** Median, min, max and every turn of each figure and ratio above (ratios per turn: `bulk.null_vs_recvlogical` …). */
  spreads: Record<string, Spread>;
  /** Everything measured, for reading what limits a figure. */
  details: {
    capture: Partial<Record<'bulk' | 'oltp', Partial<CaptureFigures>>>;
    downstream: DownstreamFigures | null;
    freshness: FreshnessRuns[];
    rss: RssFigures | null;
    deployed: DeployedFreshnessRuns | null;
  };
}

const round = (v: number | undefined | null) => (v == null ? null : Math.round(v));

/** The spreads a report carries, under stable names. */
export function collectSpreads(r: Pick<BenchReport, 'details'>): Record<string, Spread> {
  const out: Record<string, Spread> = {};
  for (const [w, c] of Object.entries(r.details.capture) as ['bulk' | 'oltp', Partial<CaptureFigures>][]) {
    if (c.drains) {
      out[`${w}.recvlogical_changes_per_s`] = spread(c.drains.recvlogical.map((d) => d.changesPerSecond));
      out[`${w}.capture_null_changes_per_s`] = spread(c.drains.nullSink.map((d) => d.changesPerSecond));
      out[`${w}.null_vs_recvlogical`] = c.drains.nullVsRecvlogical;
    }
    if (c.kinesis) {
      out[`${w}.capture_kinesis_changes_per_s`] = spread(c.kinesis.kinesis.map((d) => d.changesPerSecond));
      out[`${w}.kinesis_ceiling_records_per_s`] = spread(c.kinesis.ceiling.map((d) => d.recordsPerSecond));
      out[`${w}.kinesis_vs_ceiling`] = c.kinesis.kinesisVsCeiling;
    }
  }
  const rt = r.details.capture.bulk?.roundTrips;
  if (rt) {
    out['kinesis_30ms.bulk_changes_per_s'] = spread(rt.bulk.inFlight.map((d) => d.changesPerSecond));
    out['kinesis_30ms.bulk_one_call_changes_per_s'] = spread(rt.bulk.oneCall.map((d) => d.changesPerSecond));
    out['kinesis_30ms.bulk_vs_one_call'] = rt.bulk.inFlightVsOneCall;
    out['kinesis_30ms.hot_key_seconds'] = spread(rt.hotKey.inFlight.map((d) => d.seconds));
    out['kinesis_30ms.hot_key_put_calls'] = spread(rt.hotKey.inFlight.map((d) => d.putCalls));
    out['kinesis_30ms.hot_key_one_call_seconds'] = spread(rt.hotKey.oneCall.map((d) => d.seconds));
    out['kinesis_30ms.hot_key_one_call_put_calls'] = spread(rt.hotKey.oneCall.map((d) => d.putCalls));
  }
  const d = r.details.downstream;
  if (d) {
    out.processor_events_per_s = d.processorEventsPerSecond;
    out.processor_events_per_cpu_s = d.processorEventsPerCpuSecond;
    out.loader_rows_per_s = d.loaderRowsPerSecond;
    out.copy_rows_per_s = spread(d.copy.map((c) => c.rowsPerSecond));
    out.loader_vs_copy = d.loaderVsCopy;
    out.loader_checked_rows_per_s = d.loaderCheckedRowsPerSecond;
    out.loader_checked_vs_copy = d.loaderCheckedVsCopy;
    out.loader_catchup_rows_per_s = d.catchUpRowsPerSecond;
    out.loader_catchup_batches_per_s = d.catchUpBatchesPerSecond;
    out.loader_catchup_vs_loader = d.catchUpVsLoader;
    out.loader_catchup_72h_minutes = d.catchUp72hMinutes;
    out.as_of_query_ms = d.asOfQueryMs;
    out.history_bytes_per_million_changes = d.historyBytesPerMillionChanges;
    out.replay_peak_rss_mb = d.replayPeakRssMb;
    out.replay_events_per_s = d.replayEventsPerSecond;
  }
  for (const f of r.details.freshness) freshnessSpreads(out, `e2e_${f.rate}`, f.runs);
  if (r.details.deployed) freshnessSpreads(out, 'e2e_prod', r.details.deployed.runs);
  return out;
}

/** Change visibility (`prefix.p99_ms` …) and watermark freshness (`prefix.watermark_p99_ms` …) over the turns. */
function freshnessSpreads(out: Record<string, Spread>, prefix: string, runs: FreshnessFigures[]): void {
  for (const p of ['p50', 'p95', 'p99'] as const) {
    out[`${prefix}.${p}_ms`] = spread(runs.map((run) => run[`${p}Ms`]));
    out[`${prefix}.watermark_${p}_ms`] = spread(runs.map((run) => run.watermark[`${p}Ms`]));
  }
}

export function workloadCapture(spreads: Record<string, Spread>, w: 'bulk' | 'oltp'): WorkloadCapture {
  const median = (key: string) => round(spreads[`${w}.${key}`]?.median);
  return {
    capture_null_changes_per_s: median('capture_null_changes_per_s'),
    recvlogical_changes_per_s: median('recvlogical_changes_per_s'),
    capture_kinesis_changes_per_s: median('capture_kinesis_changes_per_s'),
    kinesis_ceiling_records_per_s: median('kinesis_ceiling_records_per_s'),
  };
}

export function roundTripKeys(spreads: Record<string, Spread>): RoundTripKeys {
  const median = (key: string, digits = 0) => {
    const v = spreads[`kinesis_30ms.${key}`]?.median;
    return v == null ? null : Number(v.toFixed(digits));
  };
  return {
    kinesis_30ms_bulk_changes_per_s: median('bulk_changes_per_s'),
    kinesis_30ms_bulk_one_call_changes_per_s: median('bulk_one_call_changes_per_s'),
    hot_key_30ms_seconds: median('hot_key_seconds', 2),
    hot_key_30ms_put_calls: median('hot_key_put_calls'),
    hot_key_30ms_one_call_seconds: median('hot_key_one_call_seconds', 2),
    hot_key_30ms_one_call_put_calls: median('hot_key_one_call_put_calls'),
  };
}

const n = (v: number | null | undefined, digits = 0) =>
  v == null ? '—' : v.toLocaleString('en-GB', { maximumFractionDigits: digits, minimumFractionDigits: digits });
/** "median (min–max)", or "—" when not measured. */
const m = (s: Spread | undefined, digits = 0) => (s ? `${n(s.median, digits)} (${n(s.min, digits)}–${n(s.max, digits)})` : '—');
const verdict = (ok: boolean | null) => (ok == null ? '' : ok ? 'met' : 'NOT met');
const atLeast = (s: Spread | undefined, goal: number) => verdict(s ? s.median >= goal : null);
const atMost = (s: Spread | undefined, goal: number) => verdict(s ? s.median <= goal : null);

/** The chaos long form's result line: kills per service, verify, fact versions against the archive, duplicates. */
export function formatChaos(c: ChaosFigures | null): string {
  if (!c) return `chaos, long form (${CHAOS_LONG_KILLS} kills): not run (npm run bench -- --chaos, or --full, runs it)`;
  const head = `chaos, long form (${n(c.killsAsked)} kills${c.outcome ? `, seed ${c.outcome.seed}` : ''}): ${c.passed ? 'PASSED' : 'FAILED'} in ${n(c.seconds)} s`;
  const o = c.outcome;
  const figures = o
    ? [
        `kills ${Object.entries(o.kills)
          .map(([service, k]) => `${service} ${k}`)
          .join(', ')}`,
        `verify ${o.verifyPassed ? 'passed' : 'FAILED'}`,
        `fact versions ${n(o.factVersions.warehouse)} in the warehouse, ${n(o.factVersions.archive)} made by the archive (${n(o.factVersions.differingIds)} ids differ)`,
        `${n(o.duplicates)} duplicate versions`,
        `${n(o.unexpectedExits)} unexpected exits`,
      ].join('; ')
    : 'ended before its checks';
  return `${head}; ${figures}${c.failure ? `\n${c.failure.slice(-1_500)}` : ''}`;
}

export function formatTable(r: BenchReport): string {
  const s = r.spreads;
  const rows: [string, string, string, string, string][] = [];
  for (const w of ['bulk', 'oltp'] as const) {
    rows.push([
      `capture → null sink, ${w} (changes/s)`,
      m(s[`${w}.capture_null_changes_per_s`]),
      `pg_recvlogical ${m(s[`${w}.recvlogical_changes_per_s`])}`,
      m(s[`${w}.null_vs_recvlogical`], 2),
      `≥ 0.80: ${atLeast(s[`${w}.null_vs_recvlogical`], 0.8)}`,
    ]);
  }
  for (const w of ['bulk', 'oltp'] as const) {
    rows.push([
      `capture → Kinesis, ${w} (changes/s)`,
      m(s[`${w}.capture_kinesis_changes_per_s`]),
      `PutRecords ceiling ${m(s[`${w}.kinesis_ceiling_records_per_s`])}`,
      m(s[`${w}.kinesis_vs_ceiling`], 2),
      'report',
    ]);
  }
  if (s['kinesis_30ms.bulk_changes_per_s']) {
    rows.push([
      'capture → Kinesis, 30 ms a call, bulk (changes/s)',
      m(s['kinesis_30ms.bulk_changes_per_s']),
      `one call in flight ${m(s['kinesis_30ms.bulk_one_call_changes_per_s'])}`,
      m(s['kinesis_30ms.bulk_vs_one_call'], 2),
      `≥ 15,000: ${atLeast(s['kinesis_30ms.bulk_changes_per_s'], 15_000)}`,
    ]);
    rows.push([
      'capture → Kinesis, 30 ms a call, 1,000 updates of one row (s)',
      `${m(s['kinesis_30ms.hot_key_seconds'], 2)}, ${n(s['kinesis_30ms.hot_key_put_calls'].median)} calls`,
      `one change a record ${m(s['kinesis_30ms.hot_key_one_call_seconds'], 2)}, ${n(s['kinesis_30ms.hot_key_one_call_put_calls'].median)} calls`,
      '',
      'report',
    ]);
  }
  rows.push([
    'processor, oltp (events/s)',
    m(s.processor_events_per_s),
    `per CPU-second ${m(s.processor_events_per_cpu_s)}`,
    '',
    `≥ 50,000: ${atLeast(s.processor_events_per_s, 50_000)}`,
  ]);
  const loaderOk = s.loader_vs_copy ? s.loader_vs_copy.median >= 0.3 && s.loader_rows_per_s.median >= 100_000 : null;
  rows.push([
    'loader, oltp (rows/s)',
    m(s.loader_rows_per_s),
    `COPY ${m(s.copy_rows_per_s)}`,
    m(s.loader_vs_copy, 2),
    `≥ 0.30 and ≥ 100,000: ${verdict(loaderOk)}`,
  ]);
  rows.push(['loader, oltp, per-row FK checks (rows/s)', m(s.loader_checked_rows_per_s), 'COPY, same turns', m(s.loader_checked_vs_copy, 2), 'report']);
  const catchUp = r.details.downstream?.catchUp;
  rows.push([
    'loader catch-up, backlog, 0.4 s a stream question (rows/s)',
    catchUp
      ? `${m(s.loader_catchup_rows_per_s)}; ${m(s.loader_catchup_batches_per_s, 1)} batches/s; ${n(Math.max(...catchUp.map((c) => c.questions)))} questions at most`
      : '—',
    `steady-state loader ${m(s.loader_rows_per_s)}`,
    m(s.loader_catchup_vs_loader, 2),
    `72 h at 1,000/s in ${m(s.loader_catchup_72h_minutes)} min ≤ 120: ${atMost(s.loader_catchup_72h_minutes, 120)}`,
  ]);
  rows.push(['as-of question over the loaded warehouse (ms)', m(s.as_of_query_ms), '', '', 'report']);
  rows.push(['dimension history, bytes per million changes', m(s.history_bytes_per_million_changes), '', '', 'report']);
  for (const f of r.details.freshness) {
    const achieved = f.runs.map((run) => run.achievedRate);
    rows.push([
      `e2e freshness at ${n(f.rate)} changes/s (ms)`,
      `p50 ${n(s[`e2e_${f.rate}.p50_ms`].median)} p95 ${n(s[`e2e_${f.rate}.p95_ms`].median)} p99 ${m(s[`e2e_${f.rate}.p99_ms`])}`,
      `simulator reached ${n(Math.min(...achieved))}–${n(Math.max(...achieved))}/s`,
      '',
      f.rate === 1_000 ? `p99 ≤ 2,000: ${atMost(s[`e2e_${f.rate}.p99_ms`], 2_000)}` : 'report',
    ]);
  }
  /** "p50 … p95 … p99 median (min–max)" of the spreads `${prefix}p50_ms` …. */
  const percentiles = (prefix: string) => `p50 ${n(s[`${prefix}p50_ms`].median)} p95 ${n(s[`${prefix}p95_ms`].median)} p99 ${m(s[`${prefix}p99_ms`])}`;
  for (const f of r.details.freshness) {
    rows.push([
      `watermark freshness at ${n(f.rate)} changes/s, sampled every 100 ms (ms)`,
      percentiles(`e2e_${f.rate}.watermark_`),
      'local shape, same turns',
      '',
      'report',
    ]);
  }
  const d = r.details.deployed;
  if (d) {
    const achieved = d.runs.map((run) => run.achievedRate);
    rows.push([
      `e2e freshness at ${n(d.rate)} changes/s, production settings (ms)`,
      percentiles('e2e_prod.'),
      `${describeShape(d.shape)}; simulator reached ${n(Math.min(...achieved))}–${n(Math.max(...achieved))}/s`,
      '',
      `p99 ≤ 5,000: ${atMost(s['e2e_prod.p99_ms'], 5_000)}`,
    ]);
    rows.push([
      'watermark freshness, production settings, sampled every 100 ms (ms)',
      percentiles('e2e_prod.watermark_'),
      'same turns',
      '',
      `p99 ≤ 10,000: ${atMost(s['e2e_prod.watermark_p99_ms'], 10_000)}`,
    ]);
  }
  rows.push([
    'replay rebuild (events/s)',
    m(s.replay_events_per_s),
    s.replay_peak_rss_mb ? `bench RSS at most ${m(s.replay_peak_rss_mb)} MB` : '—',
    '',
    `≥ 50,000: ${atLeast(s.replay_events_per_s, 50_000)}`,
  ]);
  const rss = r.details.rss;
  rows.push([
    rss ? `capture peak RSS: ${n(rss.bigTransaction.rows)}-row tx, ${rss.stall.seconds} s stall (MB)` : 'capture peak RSS (MB)',
    n(r.capture_rss_mb_max),
    rss ? `stall: ${n(rss.stall.startMb)} → max ${n(rss.stall.maxMb)}` : '—',
    '',
    `≤ 256, flat: ${verdict(r.capture_rss_mb_max == null ? null : r.capture_rss_mb_max <= 256)}`,
  ]);
  const header: [string, string, string, string, string] = ['figure: median (min–max)', 'totes-cdc', 'reference, same turns', 'ratio', 'goal (at the median)'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
