/**
 * `npm run bench`: every performance figure of totes-cdc beside its reference, measured in the
 * same run on the same machine, in turns (A, B, A, B, …) at sizes where one turn takes at least
 * about 2 s, so a ratio means something on a noisy shared box: each is the median of its turns,
 * printed with its min and max. Quick by default (about 5 minutes); --full for the
 * 1,000,000-row sizes. Prints a table; --json PATH writes the report (docs/performance.md
 * explains each figure and method).
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { measureDrains, measureKinesis, measureRoundTrips, type CaptureFigures } from './capture-figures.ts';
import { CHAOS_LONG_KILLS, measureChaos } from './chaos.ts';
import { measureCaptureRss } from './capture-rss.ts';
import { deployedShape } from './deployed-shape.ts';
import { measureDownstream } from './downstream.ts';
import { machine, startEnvironment } from './environment.ts';
import { measureFreshness } from './freshness.ts';
import { formatPersonalData, measurePersonalData, type PersonalDataFigures } from './personal-data.ts';
import { collectSpreads, formatChaos, formatTable, roundTripKeys, workloadCapture, type BenchReport, type FreshnessRuns } from './report.ts';
import { repeat } from './runs.ts';

const SIZES = {
  quick: {
    turns: 3,
    bulkRows: 300_000,
    kinesisBulkRows: 40_000,
    oltpTransactions: 55_000,
    kinesisOltpTransactions: 15_000,
    roundTripBulkRows: 60_000,
    hotKeyUpdates: 1_000,
    e2eSeconds: 10,
    e2eHighRateTurns: 1,
    e2eProdSeconds: 20,
    rssRows: 200_000,
    stallSeconds: 10,
    stallRows: 100_000,
    personalChanges: 30_000,
  },
  full: {
    turns: 3,
    bulkRows: 1_000_000,
    kinesisBulkRows: 1_000_000,
    oltpTransactions: 333_334,
    kinesisOltpTransactions: 333_334,
    roundTripBulkRows: 300_000,
    hotKeyUpdates: 1_000,
    e2eSeconds: 60,
    e2eHighRateTurns: 3,
    e2eProdSeconds: 120,
    rssRows: 1_000_000,
    stallSeconds: 30,
    stallRows: 500_000,
    personalChanges: 200_000,
  },
};
/** The oltp workload's stream, filled once for the processor, the loader and replay. */
const DOWNSTREAM_STREAM = 'bench-oltp-downstream';
const E2E_RATE = 1_000;
const E2E_HIGH_RATE = 5_000;
const SECTIONS = ['capture', 'downstream', 'e2e', 'e2e-prod', 'rss', 'personal', 'chaos'] as const;
type Section = (typeof SECTIONS)[number];

const q = SIZES.quick;
const USAGE = `npm run bench -- [--full] [--chaos] [--json PATH] [--only ${SECTIONS.join(',')}]
  (default: quick, ${q.turns} turns of each figure and its reference: bulk ${q.bulkRows.toLocaleString()} rows (${q.kinesisBulkRows.toLocaleString()} into Kinesis), oltp ${q.oltpTransactions.toLocaleString()} transactions (${q.kinesisOltpTransactions.toLocaleString()}),
   bulk ${q.roundTripBulkRows.toLocaleString()} rows and ${q.hotKeyUpdates.toLocaleString()} updates of one row into Kinesis with 30 ms a call, e2e ${q.turns} x ${q.e2eSeconds} s at ${E2E_RATE.toLocaleString()}/s and ${q.e2eHighRateTurns} x ${q.e2eSeconds} s at ${E2E_HIGH_RATE.toLocaleString()}/s,
   e2e-prod (the production settings of infra/config.ts) ${q.turns} x ${q.e2eProdSeconds} s at ${E2E_RATE.toLocaleString()}/s (with the scheduled loader at least two of its periods), RSS ${q.rssRows.toLocaleString()} rows, ${q.stallSeconds} s stall)
  --full        bulk 1,000,000 rows (300,000 at 30 ms a call), oltp 1,000,000 changes, e2e 60 s turns, a 1,000,000-row RSS transaction, 30 s stall, and --chaos
  --chaos       also the chaos test's long form: ${CHAOS_LONG_KILLS} SIGKILLs of the compose services (test/chaos.e2e.test.ts, TOTES_CHAOS_KILLS=${CHAOS_LONG_KILLS}), run first
  --json PATH   write the report as JSON
  --only LIST   measure only these sections (the others' figures are null); downstream needs capture; chaos in the list runs it`;

const say = (line: string) => process.stderr.write(`[bench] ${new Date().toISOString().slice(11, 19)} ${line}\n`);

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      full: { type: 'boolean', default: false },
      chaos: { type: 'boolean', default: false },
      json: { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
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
  const loadAtStart = loadavg();
  // first, while nothing else of the bench runs: it starts its own servers and services
  const runChaos = only.has('chaos') && (values.full || values.chaos || values.only !== undefined);
  const chaos = runChaos ? await measureChaos(CHAOS_LONG_KILLS, say) : null;

  say(`${mode} run: starting Postgres x2, kinesalite, s3rver (load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')})`);
  const env = await startEnvironment();
  try {
    const capture: Partial<Record<'bulk' | 'oltp', CaptureFigures>> = {};
    if (only.has('capture')) {
      capture.bulk = {
        drains: await measureDrains(env, 'bulk', sizes.bulkRows, sizes.turns, say),
        kinesis: await measureKinesis(env, 'bulk', sizes.kinesisBulkRows, sizes.turns, say),
        roundTrips: await measureRoundTrips(env, sizes.roundTripBulkRows, sizes.hotKeyUpdates, sizes.turns, say),
      };
      capture.oltp = {
        drains: await measureDrains(env, 'oltp', sizes.oltpTransactions, sizes.turns, say, only.has('downstream') ? DOWNSTREAM_STREAM : undefined),
        kinesis: await measureKinesis(env, 'oltp', sizes.kinesisOltpTransactions, sizes.turns, say),
      };
    }
    const stream = capture.oltp?.drains.filled;
    const downstream = stream ? await measureDownstream(env, stream.streamName, stream.records, sizes.turns, say) : null;
    const freshness: FreshnessRuns[] = [];
    if (only.has('e2e')) {
      for (const [rate, turns] of [
        [E2E_RATE, sizes.turns],
        [E2E_HIGH_RATE, sizes.e2eHighRateTurns],
      ]) {
        const runs = await repeat(turns, (turn) => measureFreshness(env, { rate, seconds: sizes.e2eSeconds, tag: `e2e_${rate}_${turn + 1}` }, say));
        freshness.push({ rate, runs });
      }
    }
    let deployed: BenchReport['details']['deployed'] = null;
    if (only.has('e2e-prod')) {
      const shape = deployedShape();
      // a scheduled loader's saw-tooth needs more than one of its periods to be sampled fairly
      const seconds = shape.loader.kind === 'scheduled' ? Math.max(sizes.e2eProdSeconds, (2 * shape.loader.everyMs) / 1_000) : sizes.e2eProdSeconds;
      const runs = await repeat(sizes.turns, (turn) => measureFreshness(env, { rate: E2E_RATE, seconds, tag: `e2e_prod_${turn + 1}`, deployed: shape }, say));
      deployed = { rate: E2E_RATE, shape, runs };
    }
    const rss = only.has('rss')
      ? await measureCaptureRss(env, { bigRows: sizes.rssRows, stallSeconds: sizes.stallSeconds, stallRows: sizes.stallRows }, say)
      : null;

    const personal: PersonalDataFigures[] = [];
    if (only.has('personal'))
      for (const mix of ['staff', 'oltp'] as const) personal.push(await measurePersonalData(env, mix, sizes.personalChanges, sizes.turns, say));

    const details: BenchReport['details'] = { capture, downstream, freshness, rss, deployed };
    const spreads = collectSpreads({ details });
    const bulk = workloadCapture(spreads, 'bulk');
    const median = (key: string) => (spreads[key] ? Math.round(spreads[key].median) : null);
    const report: BenchReport = {
      mode,
      command: `npm run bench -- ${argv.join(' ')}`.trim(),
      at: new Date().toISOString(),
      machine: await machine(env),
      load: { start: loadAtStart, end: loadavg() },
      sizes,
      ...bulk,
      kinesis_ceiling_records_per_s: median('oltp.kinesis_ceiling_records_per_s'),
      ...roundTripKeys(spreads),
      bulk,
      oltp: workloadCapture(spreads, 'oltp'),
      processor_events_per_s: median('processor_events_per_s'),
      processor_events_per_cpu_s: median('processor_events_per_cpu_s'),
      loader_rows_per_s: median('loader_rows_per_s'),
      loader_catchup_rows_per_s: median('loader_catchup_rows_per_s'),
      loader_catchup_72h_minutes: median('loader_catchup_72h_minutes'),
      copy_rows_per_s: median('copy_rows_per_s'),
      as_of_query_ms: median('as_of_query_ms'),
      history_bytes_per_million_changes: median('history_bytes_per_million_changes'),
      e2e_p50_ms: median(`e2e_${E2E_RATE}.p50_ms`),
      e2e_p95_ms: median(`e2e_${E2E_RATE}.p95_ms`),
      e2e_p99_ms: median(`e2e_${E2E_RATE}.p99_ms`),
      e2e_high_rate_p99_ms: median(`e2e_${E2E_HIGH_RATE}.p99_ms`),
      e2e_watermark_p50_ms: median(`e2e_${E2E_RATE}.watermark_p50_ms`),
      e2e_watermark_p95_ms: median(`e2e_${E2E_RATE}.watermark_p95_ms`),
      e2e_watermark_p99_ms: median(`e2e_${E2E_RATE}.watermark_p99_ms`),
      e2e_prod_p50_ms: median('e2e_prod.p50_ms'),
      e2e_prod_p95_ms: median('e2e_prod.p95_ms'),
      e2e_prod_p99_ms: median('e2e_prod.p99_ms'),
      e2e_prod_watermark_p50_ms: median('e2e_prod.watermark_p50_ms'),
      e2e_prod_watermark_p95_ms: median('e2e_prod.watermark_p95_ms'),
      e2e_prod_watermark_p99_ms: median('e2e_prod.watermark_p99_ms'),
      replay_events_per_s: median('replay_events_per_s'),
      capture_rss_mb_max: rss ? Math.round(rss.maxMb) : null,
      chaos,
      spreads,
      details,
    };
    process.stdout.write(`\n${formatTable(report)}\n${formatChaos(chaos)}\n${formatPersonalData(personal)}\n\n`);
    const mc = report.machine;
    process.stdout.write(`${mc.cores} cores (${mc.cpu_model}), ${mc.memory_gb} GB, Node ${mc.node}, Postgres ${mc.postgres}, ${mc.pg_recvlogical}\n`);
    process.stdout.write(`load average at start ${fmtLoad(report.load.start)}, at end ${fmtLoad(report.load.end)}\n`);
    if (values.json) {
      writeFileSync(values.json, `${JSON.stringify({ ...report, personal_data: personal }, null, 2)}\n`);
      say(`report written to ${values.json}`);
    }
    return chaos && !chaos.passed ? 1 : 0;
  } finally {
    await env.stop();
  }
}

const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
