/**
 * `totes replay`: load the warehouse from the raw archive, either into the live schema (an
 * idempotent catch-up) or into a fresh schema that is switched in when complete (--rebuild).
 * The work is replay/replay.ts; this is flags, defaults and what gets printed.
 */
import type { ParseArgsConfig } from 'node:util';
import {
  ArchiveCorruptError,
  DEFAULT_BATCH_EVENTS,
  DEFAULT_GAP_THRESHOLD_MS,
  DEFAULT_WINDOW_EVENTS,
  formatBehind,
  formatCorrupt,
  formatGap,
  replayArchive,
  sourceTablesFor,
  type ReplayOptions,
} from '../replay/replay.ts';
import { switchInRebuild, SwitchInError } from '../replay/switch-in.ts';
import { ReplayProgressBar } from '../replay/replay-progress.ts';
import { RAW_PREFIX } from '../formats/archive-layout.ts';
import { s3Client } from '../lib/aws.ts';
import { subjectKeysFrom } from '../stores/key-wrappers.ts';
import { databaseUrl, ENV } from '../lib/config.ts';
import { poolFor } from '../lib/pg.ts';
import { DEFAULT_STACK, INGESTION_BUCKET } from '../local/stack.ts';

const say = (line: string) => process.stderr.write(`${line}\n`);
const n = (x: number) => Math.round(x).toLocaleString('en-GB');

/** In AWS (TOTES_INGESTION_BUCKET set) the defaults come from the environment; otherwise they are the local stack's. */
const inAws = Boolean(process.env[ENV.ingestionBucket]);

const USAGE = `totes replay [options]

Streams the raw archive (GZIP NDJSON change events) in delivery order, puts them back in
(commit LSN, position) order in a window of --window events, drops copies, and loads them as it
goes with the processor's mapping and the loader's merge; memory does not grow with the archive.
Without --rebuild it loads into the live schema: an idempotent catch-up (the archive is read
once first to check it, so a corrupt one loads nothing).

  --bucket NAME          ingestion bucket (default env TOTES_INGESTION_BUCKET, locally ${INGESTION_BUCKET})
  --prefix PREFIX        archive key prefix (default raw/)
  --s3-endpoint URL      S3 endpoint (default env TOTES_S3_ENDPOINT, locally the stack's s3rver; unset in AWS)
  --warehouse URL        warehouse (default env TOTES_WAREHOUSE_URL or TOTES_WAREHOUSE_SECRET_ARN, locally the stack's)
  --schema NAME          the live warehouse schema (default public)
  --rebuild              build a fresh warehouse in --rebuild-schema, then switch it in for --schema
  --rebuild-schema NAME  where to build it (default totes_rebuild; dropped first)
  --no-switch            with --rebuild: build only, leave the live schema alone
  --switch-timeout S     how long the live loader may be held while the archive catches up (default 300)
  --from TIME            only events committed at or after TIME (ISO 8601, e.g. 2024-05-01T00:00Z)
  --to TIME              only events committed before TIME
  --tables A,B           only these tables: totesys names (payment) or warehouse names (fact_payment)
  --skip-corrupt         report corrupt objects and lines and load the rest (default: report and load nothing)
  --gap-minutes M        report consecutive heartbeats further apart than this as a hole (default ${DEFAULT_GAP_THRESHOLD_MS / 60_000})
  --batch N              change events per load transaction (default ${DEFAULT_BATCH_EVENTS})
  --window N             events held to put the archive back in order (default ${DEFAULT_WINDOW_EVENTS}); a row whose
                         versions the archive holds further apart than this out of order is reported

The archive is complete up to the lowest newest heartbeat over the shards open at its newest
heartbeat; a shard open then with no heartbeat archived (or none for --gap-minutes) is reported
by name. A --rebuild waits up to --switch-timeout for it before switching in.

Exit status: 0 done; 1 corrupt archive (nothing loaded), or the switch failed (the archive still
lacked a shard or live changes); 2 usage; 3 loaded but the archive has holes, lacks a shard (without
a switch), or holds rows out of order beyond --window (a --rebuild is then not switched in).`;

function parseTime(value: string | boolean | undefined, flag: string): Date | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(String(value));
  if (Number.isNaN(t)) throw new RangeError(`--${flag}: not a time: ${JSON.stringify(value)}`);
  return new Date(t);
}

function positive(value: string | boolean | undefined, flag: string): number {
  const v = Number(value);
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`--${flag} must be a positive number, got ${JSON.stringify(value)}`);
  return v;
}

export const replayCommand = {
  summary: 'load the warehouse from the raw archive: catch up the live one, or rebuild and switch in',
  usage: USAGE,
  options: {
    bucket: { type: 'string', default: process.env[ENV.ingestionBucket] ?? INGESTION_BUCKET },
    prefix: { type: 'string', default: RAW_PREFIX },
    's3-endpoint': {
      type: 'string',
      ...(process.env[ENV.s3Endpoint] || !inAws ? { default: process.env[ENV.s3Endpoint] ?? `http://127.0.0.1:${DEFAULT_STACK.s3Port}` } : {}),
    },
    warehouse: {
      type: 'string',
      ...(process.env[ENV.warehouseUrl] || !inAws
        ? { default: process.env[ENV.warehouseUrl] ?? `postgres://postgres:postgres@127.0.0.1:${DEFAULT_STACK.warehousePort}/warehouse` }
        : {}),
    },
    schema: { type: 'string', default: 'public' },
    rebuild: { type: 'boolean', default: false },
    'rebuild-schema': { type: 'string', default: 'totes_rebuild' },
    'no-switch': { type: 'boolean', default: false },
    'switch-timeout': { type: 'string', default: '300' },
    from: { type: 'string' },
    to: { type: 'string' },
    tables: { type: 'string' },
    'skip-corrupt': { type: 'boolean', default: false },
    'gap-minutes': { type: 'string', default: String(DEFAULT_GAP_THRESHOLD_MS / 60_000) },
    batch: { type: 'string', default: String(DEFAULT_BATCH_EVENTS) },
    window: { type: 'string', default: String(DEFAULT_WINDOW_EVENTS) },
  } satisfies NonNullable<ParseArgsConfig['options']>,

  async run(values: Record<string, string | boolean | undefined>): Promise<number> {
    let opts: Omit<ReplayOptions, 's3' | 'pool'>;
    let switchTimeoutMs: number;
    const live = String(values.schema);
    const rebuild = values.rebuild === true;
    const rebuildSchema = String(values['rebuild-schema']);
    try {
      opts = {
        bucket: String(values.bucket),
        prefix: String(values.prefix),
        schema: rebuild ? rebuildSchema : live,
        freshSchema: rebuild,
        recordWatermark: rebuild,
        from: parseTime(values.from, 'from'),
        to: parseTime(values.to, 'to'),
        tables: values.tables
          ? sourceTablesFor(
              String(values.tables)
                .split(',')
                .map((t) => t.trim())
                .filter(Boolean),
            )
          : undefined,
        skipCorrupt: values['skip-corrupt'] === true,
        gapThresholdMs: positive(values['gap-minutes'], 'gap-minutes') * 60_000,
        batchEvents: positive(values.batch, 'batch'),
        windowEvents: positive(values.window, 'window'),
      };
      switchTimeoutMs = positive(values['switch-timeout'], 'switch-timeout') * 1000;
      if (rebuild && rebuildSchema === live) throw new RangeError('--rebuild-schema must differ from --schema: it is dropped before the rebuild');
      if (rebuild && !values['no-switch'] && (opts.from || opts.to || opts.tables)) {
        throw new RangeError('a rebuild filtered by --from, --to or --tables is not the whole warehouse: add --no-switch to build it for inspection');
      }
    } catch (err) {
      say(`totes replay: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    const warehouseUrl = values.warehouse ? String(values.warehouse) : await databaseUrl(process.env, 'warehouse');
    const s3 = s3Client({ s3Endpoint: values['s3-endpoint'] ? String(values['s3-endpoint']) : undefined });
    const pool = poolFor(warehouseUrl, 4);
    const progress = new ReplayProgressBar();
    try {
      say(
        rebuild
          ? `rebuilding into schema ${rebuildSchema} from s3://${opts.bucket}/${opts.prefix}`
          : `catching up schema ${live} from s3://${opts.bucket}/${opts.prefix}`,
      );
      const result = await replayArchive({ ...opts, s3, pool, keys: subjectKeysFrom(process.env, s3) ?? undefined, onProgress: progress.update });
      progress.done();
      say(
        `replayed ${n(result.events)} events (${n(result.duplicates)} duplicate copies dropped, ${n(result.heartbeats)} heartbeats, ${n(result.ends)} truncates and snapshot ranges) from ${n(result.objects)} objects, ` +
          `${(result.bytes / 1024 / 1024).toFixed(1)} MiB, in ${result.seconds.toFixed(1)}s: ${n(result.eventsPerSecond)} events/s`,
      );
      say(
        `memory at most ${n(result.memory.peakRssMb)} MB RSS, ${n(result.memory.peakHeapMb)} MB heap; at most ${n(result.memory.peakEventsHeld)} events held at once (window ${n(result.windowEvents)})`,
      );
      if (result.late)
        say(`${n(result.late)} events came after later ones had loaded (shards the archive holds behind others, or copies delivered again later): loaded then`);
      say(`batches: ${n(result.batches)} (${n(result.batchesSkipped)} already loaded, skipped)`);
      if (result.watermark) say(`newest heartbeat replayed: ${result.watermark.lsn} committed ${result.watermark.commitTime}`);
      const { point, basis, behind } = result.completeness;
      if (point)
        say(
          basis === 'shards'
            ? `complete up to ${point.lsn} committed ${point.commitTime}: every shard open at the newest heartbeat is archived up to there`
            : `complete up to at most ${point.lsn} committed ${point.commitTime}: these heartbeats name no shard (archived before they did), so another shard's objects may not be archived that far`,
        );
      if (behind.length)
        say(`\nINCOMPLETE: the archive lacks shards open at its newest heartbeat (not archived yet, or lost):\n${behind.map(formatBehind).join('\n')}`);
      if (result.corrupt.length)
        say(
          `\nSKIPPED ${result.corrupt.length} corrupt ${result.corrupt.length === 1 ? 'entry' : 'entries'} (--skip-corrupt):\n${result.corrupt.map(formatCorrupt).join('\n')}`,
        );
      if (result.unmappable.length) {
        say(`\n${result.unmappable.length} events could not be mapped (the live processor dead-letters these too):`);
        for (const u of result.unmappable.slice(0, 20)) say(`  ${u.table} ${u.id}: ${u.reason}`);
      }
      if (result.outOfOrder) {
        say(
          `\nOUT OF ORDER: ${n(result.outOfOrder)} fact versions came after a later version of their own row had loaded (the archive holds them further apart than --window ${n(result.windowEvents)}); their rows' history may differ from an ordered replay:`,
        );
        for (const r of result.outOfOrderRows) say(`  ${r.table} key=${r.key} ${r.id} (in ${r.object})`);
      }
      if (result.gaps.length)
        say(
          `\nHOLES: ${result.gaps.length} gaps between heartbeats longer than ${Number(values['gap-minutes'])} min (missing objects, or capture was down):\n${result.gaps.map(formatGap).join('\n')}`,
        );
      if (result.gaps.length || result.outOfOrder) {
        if (rebuild && !values['no-switch'])
          say(
            `\nnot switched in: schema ${rebuildSchema} is left for inspection; rerun with a larger --gap-minutes if the holes are expected, a larger --window for rows out of order`,
          );
        return 3;
      }
      if (behind.length && !(rebuild && !values['no-switch'])) {
        say(
          rebuild
            ? `\nschema ${rebuildSchema} holds what the archive has, complete only as far as its totes_freshness says: rebuild again once the archive holds the shards above`
            : `\nschema ${live} got what the archive has; replay again once it holds the shards above`,
        );
        return 3;
      }
      if (rebuild && !values['no-switch']) {
        if (behind.length) say(`waiting up to ${switchTimeoutMs / 1000}s for the archive to hold them`);
        say(`switching ${rebuildSchema} in for ${live} (the live loader waits meanwhile)…`);
        const switched = await switchInRebuild({
          ...opts,
          s3,
          pool,
          rebuildSchema,
          liveSchema: live,
          rebuilt: result,
          timeoutMs: switchTimeoutMs,
          onProgress: progress.update,
        });
        progress.done();
        say(
          `switched in after ${switched.catchUpPasses} catch-up passes (${n(switched.catchUpEvents)} more events); the live loader waited ${switched.pausedSeconds.toFixed(1)}s`,
        );
        say(
          switched.replacedSchema
            ? `the previous warehouse is schema ${switched.replacedSchema}: compare, then DROP SCHEMA "${switched.replacedSchema}" CASCADE`
            : `there was no previous ${live} schema`,
        );
      }
      return 0;
    } catch (err) {
      progress.done();
      if (err instanceof ArchiveCorruptError) {
        say(`\n${err.message}\n\nrerun with --skip-corrupt to load everything else`);
        return 1;
      }
      if (err instanceof SwitchInError) {
        say(`\n${err.message}`);
        return 1;
      }
      throw err;
    } finally {
      await pool.end();
      s3.destroy();
    }
  },
};
