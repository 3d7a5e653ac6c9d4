/**
 * `totes`: the command line. Each command is a small function over the same pieces the
 * services use; `totes <command> --help` tells its flags.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { formatStatus, snapshotStatus, StatusLine } from '../local/status-line.ts';
import { DEFAULT_STACK, INGESTION_BUCKET, KEYS_BUCKET, LocalStack, PROCESSED_BUCKET, type StackOptions } from '../local/stack.ts';
import { POSTGRES_MAJORS, type PostgresMajor } from '../local/servers.ts';
import { sourceSetupSql } from '../capture/source-setup.ts';
import { requestSnapshot } from '../capture/chunked-snapshot.ts';
import { isSourceTable, SOURCE_TABLE_NAMES } from '../formats/source-tables.ts';
import { ENV } from '../lib/config.ts';
import { describeFatal } from '../lib/fatal.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { runService, SERVICES } from '../local/services.ts';
import { startDashboard } from '../dashboard/server.ts';
import { doctorCommand } from './doctor.ts';
import { DEAD_LETTER_HELP, DEAD_LETTER_OPTIONS, deadLetterPanel, deadLettersCommand, deadLetterSource } from './dead-letters-command.ts';
import { forgetCommand } from './forget-command.ts';
import { replayCommand } from './replay-command.ts';
import { reprocessCommand } from './reprocess-command.ts';
import { checkWarehouseEmpty, type GivenSource, leftOnSource, prepareGivenSource, withoutPassword } from './start-source.ts';
import { formatDifferences, formatSetAside, verify, type VerifyOptions, type VerifyResult } from '../verify/verify.ts';
import { loadTruth, saveTruth, verifyAsOf } from '../verify/as-of.ts';

/** What `totes verify`'s flags say, in either mode. */
function verifyOptions(values: Record<string, string | boolean | undefined>): VerifyOptions {
  return {
    sourceUrl: String(values.source),
    warehouseUrl: String(values.warehouse),
    schema: String(values.schema),
    waitMs: number(values, 'wait') * 1000,
    deadLetters: { bucket: String(values.bucket), s3Endpoint: values['s3-endpoint'] as string | undefined },
    archive: values['archive-bucket'] ? { bucket: String(values['archive-bucket']), s3Endpoint: values['s3-endpoint'] as string | undefined } : undefined,
    keys: values['keys-bucket']
      ? {
          bucket: String(values['keys-bucket']),
          s3Endpoint: values['s3-endpoint'] as string | undefined,
          // the master key as the services name it
          kmsKeyId: process.env[ENV.kmsKeyId],
          masterKeyFile: process.env[ENV.masterKeyFile],
        }
      : undefined,
  };
}

/** `totes verify --as-of` / `--at FILE`: the comparison at one pinned source position. */
async function verifyAsOfCommand(values: Record<string, string | boolean | undefined>): Promise<number> {
  if (values.at && (values['as-of'] || values.save)) throw new UsageError('--at compares a truth saved earlier: give it without --as-of and --save');
  const at = values.at ? await loadTruth(String(values.at)) : undefined;
  const save = values.save ? String(values.save) : undefined;
  if (at) say(`comparing the truth pinned at source LSN ${at.point.lsn} (${at.pinnedAt})`);
  const result = await verifyAsOf({
    ...verifyOptions(values),
    at,
    onPinned: async (pinned) => {
      say(`pinned the source at LSN ${pinned.point.lsn} (slot consistent point ${pinned.point.consistentPoint}, ${pinned.pinnedAt})`);
      if (save) {
        await saveTruth(save, pinned);
        say(`saved the truth to ${save}: \`totes verify --at ${save}\` compares it later`);
      }
    },
  });
  say(`as of source LSN ${result.point.lsn} (warehouse watermark ${result.watermarkLsn}):`);
  printVerify(result);
  say(result.ok ? '\nverify: PASSED' : '\nverify: FAILED');
  return result.ok ? 0 : 1;
}

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  positionals?: boolean;
  run(values: Record<string, string | boolean | undefined>, positionals?: string[]): Promise<number>;
}

const STACK_OPTIONS = {
  'source-port': { type: 'string', default: String(DEFAULT_STACK.sourcePort) },
  'source-postgres': { type: 'string', default: String(DEFAULT_STACK.sourceMajor) },
  'warehouse-port': { type: 'string', default: String(DEFAULT_STACK.warehousePort) },
  'kinesis-port': { type: 'string', default: String(DEFAULT_STACK.kinesisPort) },
  's3-port': { type: 'string', default: String(DEFAULT_STACK.s3Port) },
  shards: { type: 'string', default: String(DEFAULT_STACK.shards) },
  seed: { type: 'string', default: String(DEFAULT_STACK.seed) },
  scale: { type: 'string', default: String(DEFAULT_STACK.scale) },
} as const;

const STACK_HELP = `  --source-port N      totesys Postgres port (default ${DEFAULT_STACK.sourcePort})
  --source-postgres N  totesys Postgres major, ${POSTGRES_MAJORS.join(', ')} (default ${DEFAULT_STACK.sourceMajor}, as totesys on RDS)
  --warehouse-port N   warehouse Postgres port (default ${DEFAULT_STACK.warehousePort})
  --kinesis-port N     kinesalite port (default ${DEFAULT_STACK.kinesisPort})
  --s3-port N          s3rver port (default ${DEFAULT_STACK.s3Port})
  --shards N           Kinesis shards (default ${DEFAULT_STACK.shards})
  --seed N             seed of the sample data and the simulator (default ${DEFAULT_STACK.seed})
  --scale X            sample data size relative to the real database (default 1: ~16k orders)`;

function number(values: Record<string, unknown>, name: string): number {
  const v = Number(values[name]);
  if (!Number.isFinite(v) || v < 0) throw new UsageError(`--${name} must be a non-negative number, got ${JSON.stringify(values[name])}`);
  return v;
}

function stackOptions(values: Record<string, unknown>): StackOptions {
  return {
    ...DEFAULT_STACK,
    sourcePort: number(values, 'source-port'),
    sourceMajor: postgresMajor(values['source-postgres']),
    warehousePort: number(values, 'warehouse-port'),
    kinesisPort: number(values, 'kinesis-port'),
    s3Port: number(values, 's3-port'),
    shards: Math.max(1, number(values, 'shards')),
    seed: number(values, 'seed'),
    scale: number(values, 'scale'),
  };
}

function postgresMajor(value: unknown): PostgresMajor {
  const major = POSTGRES_MAJORS.find((m) => String(m) === value);
  if (major === undefined) throw new UsageError(`--source-postgres must be one of ${POSTGRES_MAJORS.join(', ')}, got ${JSON.stringify(value)}`);
  return major;
}

export class UsageError extends Error {}

const DEFAULT_DASHBOARD_PORT = 8088;

const say = (line: string) => process.stderr.write(`${line}\n`);

function statusReader(stack: LocalStack, simulated?: () => number) {
  return async () => formatStatus({ ...(await snapshotStatus(stack.pipeline, stack.sourcePool, stack.options.slotName)), simulated: simulated?.() });
}

async function withStack<T>(options: StackOptions, fn: (stack: LocalStack) => Promise<T>): Promise<T> {
  const stack = new LocalStack(options);
  try {
    await stack.start((step) => say(`· ${step}`));
    return await fn(stack);
  } finally {
    await stack.stop();
  }
}

/** A line per table, then the differences, then the source rows set aside and which of them no dead letter accounts for. */
function printVerify(result: VerifyResult): void {
  for (const t of result.tables) {
    const versions = t.versions != null ? ` (${t.versions.toLocaleString('en-GB')} versions)` : '';
    const found = [t.differences > 0 ? `${t.differences} differences` : '', t.setAside > 0 ? `${t.setAside} set aside` : ''].filter(Boolean).join(', ');
    say(`  ${t.table.padEnd(20)} ${t.rows.toLocaleString('en-GB').padStart(8)} rows${versions.padEnd(22)} ${found || 'ok'}`);
  }
  if (result.differences.length > 0) say(`\nDifferences (table, key, column, expected, found):\n${formatDifferences(result.differences)}`);
  if (result.setAside.length > 0) {
    const unaccounted = result.setAside.filter((s) => !s.deadLetter).length;
    say(
      `\nRows set aside, not compared: the warehouse cannot hold a value (source table, key, column, value, reason; dead letter):\n${formatSetAside(result.setAside)}\n` +
        (unaccounted === 0
          ? 'A dead letter names each: correct the value at the source and the row loads.'
          : `${unaccounted} of them with NO DEAD LETTER: the pipeline did not set the change aside as it must (or the dead letter is gone).`),
    );
  }
}

const COMMANDS: Record<string, Command> = {
  start: {
    summary: 'start the local stack and keep it running until Ctrl-C (on your own totesys with --source URL)',
    usage: `totes start [options]
${STACK_HELP}
  --rate N             simulated changes per second (default 20)
  --no-simulator       do not simulate the business
  --dashboard-port N   the dashboard's port (default ${DEFAULT_DASHBOARD_PORT}; 0 turns it off)

On your own totesys (e.g. a restored copy), instead of the embedded one:
  --source URL         capture this totesys: checked first as \`totes doctor\` does; never seeded,
                       never simulated against (--source-port, --source-postgres, --seed, --scale,
                       --rate do not apply); it must have the setup \`totes source-setup\` prints
  --apply-setup        create what is missing of that setup that the URL's role may create
                       (capture's schema totes_cdc and the publication); otherwise nothing is
  --slot NAME          the replication slot capture creates there (default ${DEFAULT_STACK.slotName})
  --publication NAME   the publication capture reads (default ${DEFAULT_STACK.publication})
  --drop-slot-on-exit  drop the slot on Ctrl-C (by default it stays, and how to drop it is said)
  --warehouse URL      an existing empty database for the warehouse (default: an embedded one)`,
    options: {
      ...STACK_OPTIONS,
      rate: { type: 'string', default: '20' },
      'no-simulator': { type: 'boolean', default: false },
      'dashboard-port': { type: 'string', default: String(DEFAULT_DASHBOARD_PORT) },
      source: { type: 'string' },
      'apply-setup': { type: 'boolean', default: false },
      slot: { type: 'string', default: DEFAULT_STACK.slotName },
      publication: { type: 'string', default: DEFAULT_STACK.publication },
      'drop-slot-on-exit': { type: 'boolean', default: false },
      warehouse: { type: 'string' },
    },
    async run(values) {
      const given: GivenSource | null = values.source
        ? { url: String(values.source), slot: String(values.slot), publication: String(values.publication), applySetup: Boolean(values['apply-setup']) }
        : null;
      if (!given && (values['apply-setup'] || values['drop-slot-on-exit']))
        throw new UsageError('--apply-setup and --drop-slot-on-exit are for --source URL: the embedded totesys is set up, and dropped, by totes');
      const warehouseUrl = values.warehouse as string | undefined;
      const prepared = given ? await prepareGivenSource(given, (text) => process.stdout.write(text)) : null;
      if (warehouseUrl) await checkWarehouseEmpty(warehouseUrl);
      for (const c of prepared?.warnings ?? []) say(`! source: ${c.what}: ${c.fix}`);
      for (const c of prepared?.created ?? []) say(`· created on the source, as --apply-setup asked: ${c}`);
      const stack = new LocalStack({
        ...stackOptions(values),
        ...(given ? { sourceUrl: given.url, slotName: given.slot, publication: given.publication, applySetup: given.applySetup } : {}),
        ...(warehouseUrl ? { warehouseUrl } : {}),
        dropSlotOnExit: Boolean(values['drop-slot-on-exit']),
      });
      const stopped = new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      try {
        await stack.start((step) => say(`· ${step}`));
        await stack.captureStreaming();
      } catch (err) {
        await stack.stop().catch(() => undefined);
        throw err;
      }
      const dashboardPort = number(values, 'dashboard-port');
      const dashboard =
        dashboardPort === 0
          ? null
          : await startDashboard({
              warehouseUrl: stack.warehouseUrl,
              port: dashboardPort,
              deadLetters: deadLetterPanel({ s3: stack.pipeline.s3, bucket: PROCESSED_BUCKET, keys: stack.pipeline.keys }),
              pipelineStatus: async () => ({
                ...(await snapshotStatus(stack.pipeline, stack.sourcePool, stack.options.slotName)),
                errors: stack.pipeline.captureError ? [{ message: `capture stopped: ${stack.pipeline.captureError.message}` }] : [],
              }),
            });
      const sealed = `Personal values travel sealed under the master key ${stack.masterKeyFile}: set ${ENV.masterKeyFile} to it for \`totes dead-letters --values\` and \`totes forget\`.\n`;
      const running = `\ntotes-cdc is running.${dashboard ? `\nDashboard: ${dashboard.url}` : ''}\n${sealed}Connect with psql:\n`;
      say(
        given
          ? `${running}  totesys (source):  psql '${withoutPassword(given.url)}'   (yours: not seeded, no simulator; totes writes nothing there but its slot ${given.slot} and capture's progress rows)\n` +
              `  warehouse:         psql ${stack.warehouseUrl}\nEvery table is snapshotted into the warehouse, then every change committed to the source streams in.\nCtrl-C stops everything and says what is left on the source.\n`
          : `${running}  totesys (source):  psql ${stack.sourceUrl}\n  warehouse:         psql ${stack.warehouseUrl}\n` +
              `Change a row in totesys and watch it arrive, e.g.\n  psql ${stack.sourceUrl} -c "UPDATE address SET phone = '0161 555 0100', last_updated = now() WHERE address_id = 1"\n` +
              `  psql ${stack.warehouseUrl} -c "SELECT location_id, phone FROM dim_location WHERE location_id = 1"\n` +
              `Erase a person everywhere (personal values are sealed under their key; --dry-run first):\n` +
              `  ${ENV.masterKeyFile}=${stack.masterKeyFile} npx totes forget --staff 1 --warehouse ${stack.warehouseUrl} --s3-endpoint http://127.0.0.1:${stack.options.s3Port} --dry-run\n` +
              `Ctrl-C stops everything.\n`,
      );
      const simulator = given || values['no-simulator'] ? null : stack.simulate({ rate: number(values, 'rate') });
      const status = new StatusLine(statusReader(stack, simulator ? () => simulator.stats.changes : undefined));
      status.start();
      await stopped;
      status.stop();
      say('stopping…');
      await dashboard?.stop();
      await stack.stop();
      if (given) say(leftOnSource(given, { slotDropped: stack.options.dropSlotOnExit, created: prepared?.created ?? [] }));
      return 0;
    },
  },
  demo: {
    summary: 'start the stack, write N changes, wait for the warehouse, verify, and exit',
    usage: `totes demo [options]\n  --changes N          simulated row changes to write (default 5000)\n  --rate N             changes per second (default 0: as fast as totesys takes them)\n${STACK_HELP}`,
    options: { ...STACK_OPTIONS, changes: { type: 'string', default: '5000' }, rate: { type: 'string', default: '0' }, source: { type: 'string' } },
    async run(values) {
      if (values.source)
        throw new UsageError(
          'demo writes simulated changes into totesys, so it runs only on the totesys it creates; to capture your own (nothing written to it), use: totes start --source URL',
        );
      const changes = number(values, 'changes');
      return withStack(stackOptions(values), async (stack) => {
        const started = Date.now();
        const simulator = stack.simulate({ rate: number(values, 'rate'), changes });
        const status = new StatusLine(statusReader(stack, () => simulator.stats.changes));
        status.start();
        while (simulator.stats.changes < changes && !stack.pipeline.captureError) await new Promise((r) => setTimeout(r, 100));
        await stack.stopSimulator();
        const result = await verify({
          sourceUrl: stack.sourceUrl,
          warehouseUrl: stack.warehouseUrl,
          waitMs: 120_000,
          deadLetters: { bucket: PROCESSED_BUCKET, s3Endpoint: `http://127.0.0.1:${stack.options.s3Port}` },
          archive: { bucket: INGESTION_BUCKET, s3Endpoint: `http://127.0.0.1:${stack.options.s3Port}` },
        });
        status.stop();
        const elapsed = (Date.now() - started) / 1000;
        say(
          `\n${simulator.stats.changes.toLocaleString('en-GB')} changes in ${simulator.stats.transactions.toLocaleString('en-GB')} transactions; ` +
            `warehouse caught up and verified after ${elapsed.toFixed(1)}s (${Math.round(simulator.stats.changes / elapsed).toLocaleString('en-GB')} changes/s)\n`,
        );
        printVerify(result);
        say(result.ok ? '\nverify: PASSED' : '\nverify: FAILED');
        return result.ok ? 0 : 1;
      });
    },
  },
  verify: {
    summary: 'reconcile the warehouse against the truth computed from totesys',
    usage: `totes verify [options]
  --source URL         totesys URL (default: the local stack's; env TOTES_SOURCE_URL)
  --warehouse URL      warehouse URL (default: the local stack's; env TOTES_WAREHOUSE_URL)
  --schema NAME        warehouse schema (default public)
  --wait SECONDS       wait this long for the warehouse to catch up (default 60; 0 compares as is)
  --bucket NAME        the processed bucket, whose dead letters account for rows set aside (default env TOTES_PROCESSED_BUCKET, locally ${PROCESSED_BUCKET})
  --s3-endpoint URL    S3 endpoint (default env TOTES_S3_ENDPOINT, locally the stack's s3rver; unset in AWS)
  --archive-bucket NAME  the raw archive (the ingestion bucket): check each deleted dimension row against the values its source row had before it ended (default env TOTES_INGESTION_BUCKET; the local stack's is ${INGESTION_BUCKET}; it reads the whole archive)
  --keys-bucket NAME   the key store's bucket: a staff member erased there (\`totes forget\`) is expected as [erased] (default env TOTES_KEYS_BUCKET, locally ${KEYS_BUCKET});
                       with --archive-bucket, the personal values the archive holds sealed are opened
                       with it and the master key the services use: env TOTES_KMS_KEY_ID (AWS) or
                       TOTES_MASTER_KEY_FILE (local)
  --as-of              pin the source at one WAL position (a temporary replication slot's snapshot:
                       the --source role needs REPLICATION), wait until the warehouse has loaded
                       past it, and compare the warehouse's as_of views at that position, exactly
  --save FILE          with --as-of: also write the pinned truth (and its LSN) to FILE
  --at FILE            compare the as_of views at the position FILE was pinned at, with its truth
                       (after later changes have loaded: proves the history); the source is not read

Exit 0 only when every compared row is equal and every row set aside (a source value the
warehouse cannot hold) is named by a dead letter. --wait bounds the wait for the warehouse
(and for capture's own snapshot); past it verify exits 1 saying so, having compared nothing.`,
    options: {
      source: { type: 'string', default: process.env.TOTES_SOURCE_URL ?? `postgres://postgres:postgres@127.0.0.1:${DEFAULT_STACK.sourcePort}/totesys` },
      warehouse: {
        type: 'string',
        default: process.env.TOTES_WAREHOUSE_URL ?? `postgres://postgres:postgres@127.0.0.1:${DEFAULT_STACK.warehousePort}/warehouse`,
      },
      schema: { type: 'string', default: 'public' },
      wait: { type: 'string', default: '60' },
      bucket: { type: 'string', default: process.env[ENV.processedBucket] ?? PROCESSED_BUCKET },
      'archive-bucket': { type: 'string', ...(process.env[ENV.ingestionBucket] ? { default: process.env[ENV.ingestionBucket] } : {}) },
      'keys-bucket': {
        type: 'string',
        ...(process.env[ENV.keysBucket] || !process.env[ENV.processedBucket] ? { default: process.env[ENV.keysBucket] ?? KEYS_BUCKET } : {}),
      },
      's3-endpoint': {
        type: 'string',
        // in AWS (the processed bucket named by the environment) no endpoint: the SDK's own
        ...(process.env[ENV.s3Endpoint] || !process.env[ENV.processedBucket]
          ? { default: process.env[ENV.s3Endpoint] ?? `http://127.0.0.1:${DEFAULT_STACK.s3Port}` }
          : {}),
      },
      'as-of': { type: 'boolean', default: false },
      save: { type: 'string' },
      at: { type: 'string' },
    },
    async run(values) {
      if (values['as-of'] || values.at) return verifyAsOfCommand(values);
      if (values.save) throw new UsageError('--save goes with --as-of');
      const result = await verify(verifyOptions(values));
      printVerify(result);
      say(result.ok ? '\nverify: PASSED' : '\nverify: FAILED');
      return result.ok ? 0 : 1;
    },
  },
  replay: replayCommand,
  forget: forgetCommand,
  'dead-letters': deadLettersCommand,
  reprocess: reprocessCommand,
  doctor: doctorCommand,
  dashboard: {
    summary: 'serve the live dashboard on a warehouse',
    usage: `totes dashboard [options]
  --warehouse URL      warehouse URL (default: the local stack's; env TOTES_WAREHOUSE_URL)
  --port N             port (default ${DEFAULT_DASHBOARD_PORT})
  --host ADDR          address to listen on (default 127.0.0.1)
Its dead-letter panel reads the processed bucket and opens personal values through the key store:
${DEAD_LETTER_HELP}`,
    options: {
      warehouse: {
        type: 'string',
        default: process.env.TOTES_WAREHOUSE_URL ?? `postgres://postgres:postgres@127.0.0.1:${DEFAULT_STACK.warehousePort}/warehouse`,
      },
      port: { type: 'string', default: String(DEFAULT_DASHBOARD_PORT) },
      host: { type: 'string', default: '127.0.0.1' },
      ...DEAD_LETTER_OPTIONS,
    },
    async run(values) {
      const deadLetters = deadLetterSource(values);
      const dashboard = await startDashboard({
        warehouseUrl: String(values.warehouse),
        port: number(values, 'port'),
        host: String(values.host),
        deadLetters: deadLetterPanel(deadLetters),
      });
      say(`dashboard: ${dashboard.url}  (Ctrl-C stops it)`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await dashboard.stop();
      deadLetters.s3.destroy();
      return 0;
    },
  },
  run: {
    summary: `run one pipeline service from environment configuration (${Object.keys(SERVICES).join(', ')})`,
    usage: `totes run <${Object.keys(SERVICES).join('|')}>

Environment:
  TOTES_SOURCE_URL | TOTES_SOURCE_SECRET_ARN          totesys (capture)
  TOTES_WAREHOUSE_URL | TOTES_WAREHOUSE_SECRET_ARN    warehouse (loader)
  TOTES_STREAM_NAME                                   Kinesis stream
  TOTES_INGESTION_BUCKET, TOTES_PROCESSED_BUCKET      S3 buckets
  TOTES_KINESIS_ENDPOINT, TOTES_S3_ENDPOINT           emulator endpoints (unset in AWS)
  TOTES_SLOT_NAME, TOTES_PUBLICATION                  default totes_cdc
  TOTES_DECODER                                       pgoutput (default) or wal2json (docs/wal2json.md)
  TOTES_HEARTBEAT_SECONDS (10), TOTES_HEALTH_PORT (8080), TOTES_MAX_HEALTHY_LAG_SECONDS (300)
  TOTES_SOURCE_SILENCE_SECONDS (40), TOTES_METRICS_SECONDS (60)  dead source connection; loader metrics interval
  TOTES_DB_CA_FILE                                    CA bundle: verify the database certificate`,
    options: {},
    positionals: true,
    async run(_values, positionals) {
      const name = positionals?.[0] ?? '';
      if (!SERVICES[name]) throw new UsageError(`name a service: ${Object.keys(SERVICES).join(', ')}`);
      await runService(name, process.env);
      return 0;
    },
  },
  seed: {
    summary: 'create the totesys schema in an empty database and fill it with sample data',
    usage: `totes seed [--source URL] [--seed N] [--scale X]
  --source URL         an empty database (default env TOTES_SOURCE_URL)
  --seed N             seed of the sample data (default ${DEFAULT_STACK.seed})
  --scale X            size relative to the real database (default 1)`,
    options: { source: { type: 'string', default: process.env.TOTES_SOURCE_URL }, seed: STACK_OPTIONS.seed, scale: STACK_OPTIONS.scale },
    async run(values) {
      if (!values.source) throw new UsageError('--source (or TOTES_SOURCE_URL) is required');
      const pool = poolFor(String(values.source), 1);
      try {
        const exists = await pool.query(`SELECT to_regclass('public.sales_order') AS t`);
        if (exists.rows[0].t) {
          say('totesys schema already present: nothing to do');
          return 0;
        }
        await inTransaction(pool, async (db) => {
          await createTotesys(db, { seed: number(values, 'seed'), sizes: scaledSizes(number(values, 'scale')) });
        });
        say('totesys created and seeded');
        return 0;
      } finally {
        await pool.end();
      }
    },
  },
  resnapshot: {
    summary: 'read one table again while streaming goes on (never writes a stale row over a newer one)',
    usage: `totes resnapshot --table NAME [--source URL] [--slot NAME]
  --table NAME         a totesys table (${SOURCE_TABLE_NAMES.join(', ')})
  --source URL         totesys URL (default: the local stack's; env TOTES_SOURCE_URL)
  --slot NAME          the capture service's slot (default totes_cdc; env TOTES_SLOT_NAME)
The running capture service picks the request up within a second and records its progress in
totes_cdc.snapshot_progress, so a restart continues where it stopped.`,
    options: {
      table: { type: 'string' },
      source: { type: 'string', default: process.env.TOTES_SOURCE_URL ?? `postgres://postgres:postgres@127.0.0.1:${DEFAULT_STACK.sourcePort}/totesys` },
      slot: { type: 'string', default: process.env.TOTES_SLOT_NAME ?? 'totes_cdc' },
    },
    async run(values) {
      const table = String(values.table ?? '');
      if (!isSourceTable(table)) throw new UsageError(`--table must be one of ${SOURCE_TABLE_NAMES.join(', ')}`);
      const pool = poolFor(String(values.source), 1);
      try {
        await requestSnapshot(pool, String(values.slot), [table]);
        say(`requested: ${table} will be read again by the capture service on slot ${values.slot}`);
        return 0;
      } finally {
        await pool.end();
      }
    },
  },
  'source-setup': {
    summary: 'print the SQL and settings a DBA applies to totesys (Postgres 13 to 18, no superuser needed)',
    usage: `totes source-setup [--publication NAME] [--role NAME]
  --publication NAME   the publication capture reads (default totes_cdc)
  --role NAME          the capture service's login role (default totes_cdc)
One script for every supported version, applied as the owner of the totesys tables (on RDS the
master user). On Postgres 13 heartbeats and snapshot watermarks travel as rows of
totes_cdc.signal, which the script creates and adds to the publication; on 14+ that table stays
empty. The capture service picks the way from the server version: nothing to set.`,
    options: { publication: { type: 'string', default: 'totes_cdc' }, role: { type: 'string', default: 'totes_cdc' } },
    async run(values) {
      process.stdout.write(sourceSetupSql({ publication: String(values.publication), role: String(values.role) }));
      return 0;
    },
  },
};

function help(): string {
  return `totes: stream totesys into the star-schema warehouse

Usage: totes <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(14)} ${c.summary}`)
  .join('\n')}

Run \`totes <command> --help\` for a command's options.
`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    say(`totes: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  let args: { values: Record<string, string | boolean | undefined>; positionals: string[] } | undefined;
  try {
    const parsed = parseArgs({ args: rest, options: command.options, allowPositionals: command.positionals ?? false, strict: true });
    args = { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals };
    return await command.run(args.values, args.positionals);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      say(`totes ${name}: ${(err as Error).message}\n\n${command.usage}`);
      return 2;
    }
    // the one place a command or service ends on an error: one line, what is wrong and what to do
    const fatal = describeFatal(err, endpointSettings(args?.values ?? {}));
    say(`totes ${[name, ...(args?.positionals ?? [])].join(' ')}: ${fatal.line}`);
    if (!fatal.expected && process.env.TOTES_LOG_LEVEL === 'debug') say(String((err as Error).stack));
    return fatal.exitCode;
  }
}

/** The settings that name an address, flags first: an unreachable one is named by its setting. */
function endpointSettings(values: Record<string, string | boolean | undefined>): Record<string, string | undefined> {
  const settings: Record<string, string | undefined> = {};
  for (const flag of ['source', 'warehouse', 's3-endpoint']) if (typeof values[flag] === 'string') settings[`--${flag}`] = values[flag] as string;
  for (const name of [ENV.sourceUrl, ENV.warehouseUrl, ENV.kinesisEndpoint, ENV.s3Endpoint]) settings[name] = process.env[name];
  return settings;
}
