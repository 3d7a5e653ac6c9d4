/**
 * `npm run bench`: every performance figure of totes-cdc beside its reference, measured in the
 * same run on the same machine, so a ratio means something on a noisy shared box.
 * Quick by default (a few minutes); --full for the sizes. Prints a table; --json PATH
 * writes the report (docs/performance.md explains each figure and method).
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { kinesisClient } from '../lib/aws.ts';
import { measureCapture, type CaptureFigures } from './capture-figures.ts';
import { kinesisCeiling } from './capture-drain.ts';
import { measureCaptureRss } from './capture-rss.ts';
import { measureDownstream } from './downstream.ts';
import { machine, startEnvironment, STREAMS } from './environment.ts';
import { measureFreshness } from './freshness.ts';
import { formatTable, workloadCapture, type BenchReport } from './report.ts';

const SIZES = {
  quick: { bulkRows: 100_000, oltpTransactions: 10_000, e2eSeconds: 30, rssRows: 200_000, stallSeconds: 10, stallRows: 100_000 },
  full: { bulkRows: 500_000, oltpTransactions: 100_000, e2eSeconds: 120, rssRows: 1_000_000, stallSeconds: 30, stallRows: 500_000 },
};
const E2E_RATE = 1_000;
const SECTIONS = ['capture', 'downstream', 'e2e', 'rss'] as const;
type Section = (typeof SECTIONS)[number];

const USAGE = `npm run bench -- [--full] [--json PATH] [--only ${SECTIONS.join(',')}]
  --full        the issue's sizes: bulk 500,000 rows, oltp 100,000 transactions, 1,000,000-row RSS transaction, 30 s stall
                (default: quick, bulk ${SIZES.quick.bulkRows.toLocaleString()}, oltp ${SIZES.quick.oltpTransactions.toLocaleString()}, RSS ${SIZES.quick.rssRows.toLocaleString()} rows, ${SIZES.quick.stallSeconds} s stall)
  --json PATH   write the report as JSON
  --only LIST   measure only these sections (the others' figures are null); downstream needs capture`;

const say = (line: string) => process.stderr.write(`[bench] ${line}\n`);

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { full: { type: 'boolean', default: false }, json: { type: 'string' }, only: { type: 'string' }, help: { type: 'boolean', default: false } },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const only = new Set((values.only?.split(',') ?? SECTIONS) as Section[]);
  for (const s of only)
    if (!SECTIONS.includes(s)) {
      process.stderr.write(`unknown section ${s}\n${USAGE}\n`);
      return 2;
    }
  if (only.has('downstream') && !only.has('capture')) {
    process.stderr.write(`downstream reads the stream the capture section fills\n${USAGE}\n`);
    return 2;
  }
  const mode = values.full ? 'full' : 'quick';
  const sizes = SIZES[mode];

  say(`${mode} run: starting Postgres x2, kinesalite, s3rver`);
  const env = await startEnvironment();
  try {
    const capture: Partial<Record<'bulk' | 'oltp', CaptureFigures>> = {};
    let ceiling: number | null = null;
    if (only.has('capture')) {
      capture.bulk = await measureCapture(env, 'bulk', sizes.bulkRows, say);
      capture.oltp = await measureCapture(env, 'oltp', sizes.oltpTransactions, say);
      say('Kinesis ceiling: 500-record PutRecords of the same record size');
      const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
      ceiling = await kinesisCeiling(kinesis, STREAMS.ceiling, capture.oltp.meanRecordBytes, Math.min(capture.oltp.changes, 50_000));
      kinesis.destroy();
    }
    const downstream = only.has('downstream') ? await measureDownstream(env, STREAMS.oltp, capture.oltp!.streamRecords, say) : null;
    const freshness = only.has('e2e') ? await measureFreshness(env, { rate: E2E_RATE, seconds: sizes.e2eSeconds }, say) : null;
    const rss = only.has('rss')
      ? await measureCaptureRss(env, { bigRows: sizes.rssRows, stallSeconds: sizes.stallSeconds, stallRows: sizes.stallRows }, say)
      : null;

    const bulk = workloadCapture(capture.bulk);
    const round = (v: number | undefined) => (v == null ? null : Math.round(v));
    const report: BenchReport = {
      mode,
      command: `npm run bench -- ${argv.join(' ')}`.trim(),
      at: new Date().toISOString(),
      machine: await machine(env),
      sizes,
      ...bulk,
      bulk,
      oltp: workloadCapture(capture.oltp),
      kinesis_ceiling_records_per_s: round(ceiling ?? undefined),
      processor_events_per_s: round(downstream?.processor.eventsPerSecond),
      loader_rows_per_s: round(downstream?.loader.rowsPerSecond),
      copy_rows_per_s: round(downstream?.copy.rowsPerSecond),
      e2e_p50_ms: round(freshness?.p50Ms),
      e2e_p95_ms: round(freshness?.p95Ms),
      e2e_p99_ms: round(freshness?.p99Ms),
      replay_events_per_s: round(downstream?.replay.eventsPerSecond),
      capture_rss_mb_max: round(rss?.maxMb),
      details: { capture, downstream, freshness, rss },
    };
    process.stdout.write(`\n${formatTable(report)}\n\n`);
    const m = report.machine;
    process.stdout.write(`${m.cores} cores (${m.cpu_model}), ${m.memory_gb} GB, Node ${m.node}, Postgres ${m.postgres}, ${m.pg_recvlogical}\n`);
    if (values.json) {
      writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
      say(`report written to ${values.json}`);
    }
    return 0;
  } finally {
    await env.stop();
  }
}
