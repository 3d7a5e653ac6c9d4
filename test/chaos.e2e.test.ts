/**
 * Chaos across process boundaries: the compose service set, each `totes run <service>` its own
 * OS process configured from the environment (capture, processor, archiver, loader), with
 * kinesalite, s3rver and both Postgres databases outliving them. During a random workload over
 * all 11 tables (inserts, updates, key changes, deletes) a random service is SIGKILLed at a
 * random moment and started again shortly after, as compose's `restart: on-failure` does:
 * TOTES_CHAOS_KILLS kills (20 by default, every service at least 3 times; 100 for the long
 * form). At the first, second and third quarter of the kills `totes verify --as-of` pins the
 * source and, while the kills go on, waits for the warehouse and compares it as of that point:
 * each must pass. Afterwards `totes verify` passes, and every fact version is accounted for
 * against the archive: exactly the versions its change events make, none twice. With
 * TOTES_CHAOS_RESULT set, the outcome is also written there as JSON (what `npm run bench --
 * --chaos` reports).
 */
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { s3Client } from '../lib/aws.ts';
import pg from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { Random } from '../totesys/random.ts';
import { BUCKETS, startComposeStack } from './compose-services.ts';
import { archivedEvents, expectedFactVersions, versionDifferences, warehouseFactVersions } from './fact-versions.ts';
import { until } from './until.ts';
import { runTotes } from './totes-process.ts';

const KILLS = Number(process.env.TOTES_CHAOS_KILLS ?? 20);
const SEED = Number(process.env.TOTES_CHAOS_SEED ?? 1);
/** Workload transactions per second. */
const RATE = 40;
/**
 * verify --as-of's bound on its wait for the warehouse (`--wait`). A killed loader is back within
 * a second or two, and even if all its kills fell inside one pin's wait it would be down far
 * less than this; but the pins wait while every service is killed in turn, and took up to 95 s
 * each (measured on 2 cores at a load of 18), so nearly twice that.
 */
const AS_OF_WAIT_S = 180;

describe('chaos: SIGKILL of any service at any moment', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });

  it(`${KILLS} kills: verify --as-of passes at pins taken among them, verify passes after, and every fact version is accounted for once`, {
    timeout: 240_000 + KILLS * 6_000,
  }, async () => {
    expect(KILLS, 'every service is killed at least 3 times').toBeGreaterThanOrEqual(12);
    const rng = new Random(SEED);
    const { source, warehouse, aws, services, archiver, loader, loaderHealth, workload } = await startComposeStack('chaos', SEED, RATE, cleanups);
    const wh = new pg.Client({ connectionString: warehouse.url });
    await wh.connect();
    cleanups.push(() => wh.end());
    const began = Date.now();
    const at = (t: number) => `+${((t - began) / 1000).toFixed(1)} s`;

    // every service three times, the rest at random, in random order
    const victims = [...services, ...services, ...services, ...Array.from({ length: KILLS - 12 }, () => rng.pick(services))];
    for (let i = victims.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [victims[i], victims[j]] = [victims[j], victims[i]];
    }
    // `totes verify --as-of` as a user runs it, pinned at the first, second and third quarter of the kills, waiting for the warehouse while they go on
    const pinBefore = new Set([1, 2, 3].map((q) => Math.floor((victims.length * q) / 4)));
    const pins: Promise<Awaited<ReturnType<typeof runTotes>> & { started: number; ended: number }>[] = [];
    const pinAsOf = async () => {
      const started = Date.now();
      const args = ['verify', '--as-of', '--source', source.url, '--warehouse', warehouse.url, '--wait', String(AS_OF_WAIT_S)];
      return { started, ...(await runTotes(args, {}, (AS_OF_WAIT_S + 60) * 1_000)), ended: Date.now() };
    };
    const restarts: Promise<void>[] = [];
    for (const [i, victim] of victims.entries()) {
      if (pinBefore.has(i)) {
        // verify refuses a warehouse its loader has not set up yet, as not a warehouse: on a busy machine the first kills can come before that
        await until(
          'the loader to set the warehouse up',
          async () => (await wh.query(`SELECT to_regclass('totes_freshness') AS t`)).rows[0].t !== null,
          120_000,
          200,
        );
        pins.push(pinAsOf());
      }
      await sleep(rng.int(500, 3_500));
      // restarted in the background, so two services can be down at once; a victim still on its way back up is waited for
      await until(`${victim.name} to be running again`, () => victim.running, 60_000);
      await victim.kill();
      restarts.push(sleep(rng.int(200, 1_000)).then(() => victim.start()));
    }
    await Promise.all(restarts);
    const killing = Date.now() - began;
    const pinned = await Promise.all(pins);
    await sleep(2_000);
    const random = await workload.stop();

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
    await archiver.kill('SIGTERM');
    const s3 = s3Client({ s3Endpoint: aws.s3Endpoint });
    cleanups.push(async () => s3.destroy());
    const archive = await archivedEvents(s3, BUCKETS.ingestion);
    const expected = expectedFactVersions(archive);
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

    /** What the loader was doing while a pin waited: a pin that timed out on a dead loader says so. */
    const loaderDuring = (pin: (typeof pinned)[number]) => {
      const lastStart = Math.max(...loader.starts.filter((t) => t <= pin.ended));
      const lastKill = Math.max(0, ...loader.kills.filter((t) => t <= pin.ended));
      const state =
        lastKill > lastStart
          ? `verify waited on a dead loader: killed at ${at(lastKill)} and not started again by ${at(pin.ended)}`
          : `the loader was running at its end (started last at ${at(lastStart)})`;
      return `${state}; loader killed at ${loader.kills.map(at).join(', ')}; unexpected exits: ${loader.unexpectedExits.join('\n') || 'none'}`;
    };
    const pinPassed = (pin: (typeof pinned)[number]) => pin.code === 0 && /verify: PASSED/.test(pin.stdout + pin.stderr);
    for (const pin of pinned) {
      const story = `verify --as-of from ${at(pin.started)} to ${at(pin.ended)}, exit ${pin.code ?? pin.signal}; ${loaderDuring(pin)}`;
      expect(`${pin.stdout.slice(-4_000)}${pin.stderr.slice(-2_000)}`, story).toMatch(/verify: PASSED/);
      expect(pin.code, story).toBe(0);
    }
    expect(verified.output.slice(-6_000), `verify after the kills (crashes: ${crashes.join('\n')})`).toMatch(/verify: PASSED/);
    expect(verified.code).toBe(0);
    expect(healthBody).toMatchObject({ healthy: true, gaps: [], waiting: [], error: null, freshness: { gapShards: 0 } });
    expect(health.status).toBe(200);
    expect(found.duplicated, 'fact versions held twice').toEqual([]);
    expect(differences.slice(0, 20), `fact ids whose versions differ from the archive (${differences.length})`).toEqual([]);
    expect(crashes, 'exits nobody caused').toEqual([]);
    const waits = pinned.map((p) => `${((p.ended - p.started) / 1000).toFixed(1)} s`).join(', ');
    console.info(
      `chaos (seed ${SEED}): kills ${JSON.stringify(kills)} in ${(killing / 1000).toFixed(0)} s; workload ${random.committed} transactions (${random.skipped} refused by the source); ` +
        `verify --as-of passed at ${pinned.filter(pinPassed).length} of ${pinned.length} pins (${waits} each); ` +
        `archive ${archive.length} events; ${versions} fact versions over ${expected.size} ids, all accounted for; ${((Date.now() - began) / 1000).toFixed(0)} s`,
    );
    for (const s of services) expect(s.kills.length, `${s.name} kills`).toBeGreaterThanOrEqual(3);
    expect(versions).toBeGreaterThan(1_000);
  });
});
