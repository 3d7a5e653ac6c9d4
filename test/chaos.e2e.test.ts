/**
 * Chaos across process boundaries: the compose service set, each `totes run <service>` its own
 * OS process configured from the environment (capture, processor, archiver, loader), with
 * kinesalite, s3rver and both Postgres databases outliving them. During a random workload over
 * all 11 tables (inserts, updates, key changes, deletes) a random service is SIGKILLed at a
 * random moment and started again shortly after, as compose's `restart: on-failure` does:
 * TOTES_CHAOS_KILLS kills (20 by default, every service at least 3 times; 100 for the long
 * form). Afterwards `totes verify` passes, and every fact version is accounted for against the
 * archive: exactly the versions its change events make, none twice. With TOTES_CHAOS_RESULT
 * set, the outcome is also written there as JSON (what `npm run bench -- --chaos` reports).
 */
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { CAPTURE_STATE_DDL, createPublicationSql } from '../capture/source-setup.ts';
import { s3Client } from '../lib/aws.ts';
import pg, { inTransaction, poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { freePort } from '../local/servers.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { Random } from '../totesys/random.ts';
import { RandomWorkload } from '../totesys/random-workload.ts';
import { archivedEvents, expectedFactVersions, versionDifferences, warehouseFactVersions } from './fact-versions.ts';
import { createDatabase, startLocalAws } from './harness.ts';
import { ServiceProcess } from './process.ts';
import { until } from './until.ts';
import { runTotes } from './totes-process.ts';

const KILLS = Number(process.env.TOTES_CHAOS_KILLS ?? 20);
const SEED = Number(process.env.TOTES_CHAOS_SEED ?? 1);
const STREAM = 'changes';
const BUCKETS = { ingestion: 'ingestion', processed: 'processed' };
/** Workload transactions per second. */
const RATE = 40;

describe('chaos: SIGKILL of any service at any moment', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });

  it(`${KILLS} kills: verify passes and every fact version is accounted for once`, { timeout: 120_000 + KILLS * 6_000 }, async () => {
    expect(KILLS, 'every service is killed at least 3 times').toBeGreaterThanOrEqual(12);
    const rng = new Random(SEED);
    const [source, warehouse, aws] = await Promise.all([
      createDatabase('chaos_src'),
      createDatabase('chaos_wh'),
      startLocalAws({ stream: STREAM, shards: 2, buckets: Object.values(BUCKETS) }),
    ]);
    cleanups.push(
      () => warehouse.drop(),
      () => source.drop(),
      () => aws.stop(),
    );
    const admin = poolFor(source.url, 3);
    cleanups.push(() => admin.end());
    const slotName = `chaos_${source.name}`;
    cleanups.push(async () => {
      await until('the slot to be released', async () => !(await slotActive()), 30_000, 50);
      await admin.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
    });
    const slotActive = async () => (await admin.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName])).rows[0]?.active === true;
    // what a DBA applies (`totes source-setup`); `run capture` does not create it
    await inTransaction(admin, async (db) => {
      await createTotesys(db, { seed: SEED, sizes: scaledSizes(0.02) });
      await db.query(CAPTURE_STATE_DDL);
      await db.query(createPublicationSql('totes_cdc'));
    });

    const loaderHealth = await freePort();
    const common = { TOTES_STREAM_NAME: STREAM, TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint, TOTES_S3_ENDPOINT: aws.s3Endpoint };
    const services = [
      new ServiceProcess(
        'capture',
        {
          ...common,
          TOTES_SOURCE_URL: source.url,
          TOTES_SLOT_NAME: slotName,
          TOTES_HEARTBEAT_SECONDS: '1',
          TOTES_INGESTION_BUCKET: BUCKETS.ingestion,
          TOTES_HEALTH_PORT: String(await freePort()),
        },
        // a killed process's walsender holds the slot a moment longer
        () => until('the slot to be released', async () => !(await slotActive()), 30_000, 50),
      ),
      new ServiceProcess('processor', { ...common, TOTES_PROCESSED_BUCKET: BUCKETS.processed }),
      new ServiceProcess('archiver', { ...common, TOTES_INGESTION_BUCKET: BUCKETS.ingestion }),
      new ServiceProcess('loader', {
        ...common,
        TOTES_WAREHOUSE_URL: warehouse.url,
        TOTES_PROCESSED_BUCKET: BUCKETS.processed,
        TOTES_HEALTH_PORT: String(loaderHealth),
      }),
    ];
    cleanups.push(async () => {
      for (const s of services) if (s.running) await s.kill();
    });
    for (const s of services) await s.start();

    // the workload, until the kills are behind it
    const workPool = poolFor(source.url, 2);
    cleanups.push(() => workPool.end());
    const random = new RandomWorkload(workPool, SEED + 1);
    const workload = random.runPaced(RATE);
    cleanups.push(() => workload.stop());

    // every service three times, the rest at random, in random order
    const victims = [...services, ...services, ...services, ...Array.from({ length: KILLS - 12 }, () => rng.pick(services))];
    for (let i = victims.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [victims[i], victims[j]] = [victims[j], victims[i]];
    }
    const restarts: Promise<void>[] = [];
    for (const victim of victims) {
      await sleep(rng.int(500, 3_500));
      // restarted in the background, so two services can be down at once; a victim still on its way back up is waited for
      await until(`${victim.name} to be running again`, () => victim.running, 60_000);
      await victim.kill();
      restarts.push(sleep(rng.int(200, 1_000)).then(() => victim.start()));
    }
    await Promise.all(restarts);
    await sleep(2_000);
    await workload.stop();

    const verify = await runTotes(['verify', '--source', source.url, '--warehouse', warehouse.url, '--wait', '120'], {}, 180_000);
    const verified = { code: verify.code, output: verify.stdout + verify.stderr };
    const crashes = services.flatMap((s) => s.unexpectedExits);
    const loaderState = async () => {
      const c = new pg.Client({ connectionString: warehouse.url });
      await c.connect();
      const { rows } = await c.query('SELECT shard, frontier_seq, watermark_lsn::text, ended, gap_missing_seq, gap_resumes_seq FROM totes_shard_progress');
      await c.end();
      const health = await fetch(`http://127.0.0.1:${loaderHealth}/health`).then(
        (r) => r.text(),
        (e: Error) => e.message,
      );
      const tails = services.map((s) => `${s.name}: ${s.tail(2_000)}`).join('\n');
      return `shard progress ${JSON.stringify(rows)}\nloader /health ${health}\n${tails}`;
    };
    const verifyPassed = /verify: PASSED/.test(verified.output) && verified.code === 0;
    if (!verifyPassed) console.error(await loaderState());
    const health = await fetch(`http://127.0.0.1:${loaderHealth}/health`);
    const healthBody = await health.json();

    // the archive, delivered in full: the stand-in flushes its buffer on SIGTERM
    await sleep(1_000);
    await services[2].kill('SIGTERM');
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    cleanups.push(async () => s3.destroy());
    const archive = await archivedEvents(s3, BUCKETS.ingestion);
    const expected = expectedFactVersions(archive);
    const wh = new pg.Client({ connectionString: warehouse.url });
    await wh.connect();
    cleanups.push(() => wh.end());
    const found = await warehouseFactVersions(wh);
    const differences = versionDifferences(expected, found.versions);
    const versions = [...expected.values()].reduce((n, s) => n + s.size, 0);
    const kills = Object.fromEntries(services.map((s) => [s.name, s.kills.length]));
    if (process.env.TOTES_CHAOS_RESULT) {
      const outcome = {
        seed: SEED,
        kills,
        verifyPassed,
        factVersions: { archive: versions, warehouse: [...found.versions.values()].reduce((n, s) => n + s.size, 0), differingIds: differences.length },
        duplicates: found.duplicated.length,
        unexpectedExits: crashes.length,
        workloadTransactions: random.committed,
      };
      writeFileSync(process.env.TOTES_CHAOS_RESULT, `${JSON.stringify(outcome)}\n`);
    }

    expect(verified.output.slice(-6_000), `verify after the kills (crashes: ${crashes.join('\n')})`).toMatch(/verify: PASSED/);
    expect(verified.code).toBe(0);
    expect(healthBody).toMatchObject({ healthy: true, gaps: [], waiting: [], error: null, freshness: { gapShards: 0 } });
    expect(health.status).toBe(200);
    expect(found.duplicated, 'fact versions held twice').toEqual([]);
    expect(differences.slice(0, 20), `fact ids whose versions differ from the archive (${differences.length})`).toEqual([]);
    expect(crashes, 'exits nobody caused').toEqual([]);
    console.info(
      `chaos (seed ${SEED}): kills ${JSON.stringify(kills)}; workload ${random.committed} transactions (${random.skipped} refused by the source); ` +
        `archive ${archive.length} events; ${versions} fact versions over ${expected.size} ids, all accounted for`,
    );
    for (const s of services) expect(s.kills.length, `${s.name} kills`).toBeGreaterThanOrEqual(3);
    expect(versions).toBeGreaterThan(1_000);
  });
});
