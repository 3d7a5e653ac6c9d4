/**
 * The compose stack for a test: a seeded totesys source set up as a DBA would, a warehouse
 * database, kinesalite and s3rver, and the compose services, each `totes run <service>` its own
 * OS process configured from the environment (capture, processor, archiver, loader), driven by
 * the random workload over all 11 tables: what the chaos and rebuild tests kill and restart.
 */
import { join } from 'node:path';
import { CAPTURE_STATE_DDL, createPublicationSql } from '../capture/source-setup.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import { freePort } from '../local/servers.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { createDatabase, startLocalAws } from './harness.ts';
import { ServiceProcess } from './process.ts';
import { ROOT, startTotes } from './totes-process.ts';
import { until } from './until.ts';

export const STREAM = 'changes';
export const BUCKETS = { ingestion: 'ingestion', processed: 'processed' };

/** Everything started, each undone by a function pushed on `cleanups` (run last first). */
export async function startComposeStack(name: string, seed: number, workloadRate: number, cleanups: (() => Promise<unknown>)[]) {
  const [source, warehouse, aws] = await Promise.all([
    createDatabase(`${name}_src`),
    createDatabase(`${name}_wh`),
    startLocalAws({ stream: STREAM, shards: 2, buckets: Object.values(BUCKETS) }),
  ]);
  cleanups.push(
    () => warehouse.drop(),
    () => source.drop(),
    () => aws.stop(),
  );
  const admin = poolFor(source.url, 3);
  cleanups.push(() => admin.end());
  const slotName = `${name}_${source.name}`;
  /** A killed capture's walsender holds the slot a moment longer. */
  const slotReleased = () =>
    until(
      'the slot to be released',
      async () => (await admin.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName])).rows[0]?.active !== true,
      30_000,
      50,
    );
  cleanups.push(async () => {
    await slotReleased();
    await admin.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
  });
  // what a DBA applies (`totes source-setup`); `run capture` does not create it
  await inTransaction(admin, async (db) => {
    await createTotesys(db, { seed, sizes: scaledSizes(0.02) });
    await db.query(CAPTURE_STATE_DDL);
    await db.query(createPublicationSql('totes_cdc'));
  });

  const loaderHealth = await freePort();
  const common = { TOTES_STREAM_NAME: STREAM, TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint, TOTES_S3_ENDPOINT: aws.s3Endpoint };
  const capture = new ServiceProcess(
    'capture',
    {
      ...common,
      TOTES_SOURCE_URL: source.url,
      TOTES_SLOT_NAME: slotName,
      TOTES_HEARTBEAT_SECONDS: '1',
      TOTES_INGESTION_BUCKET: BUCKETS.ingestion,
      TOTES_HEALTH_PORT: String(await freePort()),
    },
    slotReleased,
  );
  const processor = new ServiceProcess('processor', { ...common, TOTES_PROCESSED_BUCKET: BUCKETS.processed });
  const archiver = new ServiceProcess('archiver', { ...common, TOTES_INGESTION_BUCKET: BUCKETS.ingestion });
  const loader = new ServiceProcess('loader', {
    ...common,
    TOTES_WAREHOUSE_URL: warehouse.url,
    TOTES_PROCESSED_BUCKET: BUCKETS.processed,
    TOTES_HEALTH_PORT: String(loaderHealth),
  });
  const services = [capture, processor, archiver, loader];
  cleanups.push(async () => {
    for (const s of services) if (s.running) await s.kill();
  });
  for (const s of services) await s.start();

  const workload = startWorkload(source.url, seed + 1, workloadRate);
  cleanups.push(() => workload.stop());
  return { source, warehouse, aws, admin, services, capture, processor, archiver, loader, loaderHealth, workload };
}

/** The random workload at `rate` transactions a second in its own process (random-workload-process.ts), until stopped. */
function startWorkload(sourceUrl: string, seed: number, rate: number) {
  const proc = startTotes([String(seed), String(rate)], { TOTES_SOURCE_URL: sourceUrl }, ['--import', 'tsx', join(ROOT, 'test', 'random-workload-process.ts')]);
  /** Transactions committed and refused by the source: known once stopped. */
  const counts = { committed: 0, skipped: 0 };
  let stopped: Promise<typeof counts> | undefined;
  const stop = async () => {
    proc.child.kill('SIGTERM');
    const { code, signal } = await proc.exited;
    const last = proc.out.stdout.trim().split('\n').at(-1) ?? '';
    if (code !== 0 || !last.startsWith('{')) throw new Error(`the random workload ended with ${code ?? signal}: ${proc.out.stderr.slice(-2_000)}`);
    return Object.assign(counts, JSON.parse(last));
  };
  return {
    counts,
    stop: () => {
      stopped ??= stop();
      return stopped;
    },
  };
}
