/**
 * A rebuild equals the live warehouse, tested the way it runs: the compose services as their
 * own processes, a random workload over all 11 tables, one shard split and two merged while it
 * runs, the processor, loader and archiver SIGKILLed within seconds of each reshard. Right after
 * the merge (the merged child's objects still in the archiver's 60 s buffer) `totes replay
 * --rebuild` builds from the archive and switches in: it must wait for the archive, not switch
 * in a warehouse that lacks what the live one held. At the end a second rebuild from the whole
 * archive must equal the live warehouse in every table, every fact version and every dimension
 * row, tombstones included (surrogate record ids aside), and verify must pass on both.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { lsnToBigInt } from '../formats/change-event.ts';
import { LOAD_TABLES, type LoadTable } from '../formats/load-tables.ts';
import { HEARTBEAT_PREFIX } from '../formats/source-signals.ts';
import { kinesisClient } from '../lib/aws.ts';
import pg from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { HISTORY_TABLES, historyName } from '../loader/history-sql.ts';
import { missingFromRebuild } from '../replay/switch-in.ts';
import { Random } from '../totesys/random.ts';
import type { ServiceProcess } from './process.ts';
import { BUCKETS, STREAM, startComposeStack } from './compose-services.ts';
import { mergeShards, openShards, splitShard } from './stream-fixture.ts';
import { runTotes } from './totes-process.ts';
import { until } from './until.ts';

const SEED = 27;
/** Workload transactions per second. */
const RATE = 40;
/** Rows of `table` in one schema and not the other (both ways), surrogate record ids aside. */
async function tableDifferences(db: pg.Client, table: string, a: string, b: string) {
  const t = (LOAD_TABLES as Record<string, LoadTable>)[table];
  const { rows: cols } = await db.query(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
    [a, table],
  );
  const columns = cols.map((c) => `"${c.column_name}"`).filter((c) => c !== `"${t?.record}"`);
  const only = async (x: string, y: string) =>
    (await db.query(`SELECT ${columns.join(', ')} FROM "${x}".${table} EXCEPT ALL SELECT ${columns.join(', ')} FROM "${y}".${table}`)).rows;
  return { table, onlyA: await only(a, b), onlyB: await only(b, a) };
}

describe('rebuild from the archive after resharding and kills', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });

  it('a rebuild right after a merge waits for the archive; a rebuild at the end equals the live warehouse; verify passes on both', {
    timeout: 600_000,
  }, async () => {
    const { source, warehouse, aws, admin, capture, processor, archiver, loader, workload } = await startComposeStack('rebuild', SEED, RATE, cleanups);
    const kinesis = kinesisClient({ kinesisEndpoint: aws.kinesisEndpoint });
    cleanups.push(async () => kinesis.destroy());
    const wh = new pg.Client({ connectionString: warehouse.url });
    await wh.connect();
    cleanups.push(() => wh.end());

    /** Kill each within a second or two of the last, restarting it shortly after, as compose does. */
    const rng = new Random(SEED);
    const killSoon = async (...victims: ServiceProcess[]) => {
      for (const v of victims) {
        await sleep(rng.int(300, 1_300));
        await v.kill();
        await sleep(300);
        await v.start();
      }
    };
    const freshness = async () => (await wh.query(`SELECT watermark_lsn::text AS lsn FROM totes_freshness`).catch(() => ({ rows: [] }))).rows[0]?.lsn ?? null;
    const livePasses = async (what: string) => {
      const marker = lsnToBigInt((await admin.query(`SELECT pg_logical_emit_message(true, $1, '')::text AS lsn`, [HEARTBEAT_PREFIX])).rows[0].lsn);
      await until(`the live watermark past a heartbeat sent ${what}`, async () => lsnToBigInt((await freshness()) ?? '0/0') >= marker, 90_000, 200);
    };
    const replay = (args: string[]) =>
      runTotes(['replay', '--bucket', BUCKETS.ingestion, '--s3-endpoint', aws.s3Endpoint, '--warehouse', warehouse.url, ...args], {}, 240_000);

    const began = Date.now();
    const mark = (what: string) => console.info(`rebuild test: ${what} at ${((Date.now() - began) / 1000).toFixed(0)} s`);
    await livePasses('at the start');
    mark('live started');
    const [first, second] = await openShards(kinesis, STREAM);
    await splitShard(kinesis, STREAM, first);
    await killSoon(processor, loader);
    const [, right] = await openShards(kinesis, STREAM);
    await livePasses('after the split');
    await mergeShards(kinesis, STREAM, right, second);
    await killSoon(loader, processor, archiver);
    await livePasses('after the merge');
    mark('merged');

    // right after the merge: the merged child's records are in the archiver's buffer, the other shard's heartbeats are archived
    const early = await replay(['--rebuild', '--switch-timeout', '150']);
    expect(early.stdout + early.stderr, 'the rebuild right after the merge').toMatch(/switched in after \d+ catch-up passes/);
    expect(early.code).toBe(0);
    const replaced = (await wh.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'public_replaced_%' AND nspname NOT LIKE '%_as_of'`)).rows.map(
      (r) => r.nspname as string,
    );
    expect(replaced).toHaveLength(1);
    mark('early rebuild switched in');
    // the switched-in rebuild held everything the warehouse it replaced held
    expect(await missingFromRebuild(wh, replaced[0], 'public')).toEqual([]);

    await killSoon(capture, loader);
    await sleep(3_000);
    await workload.stop();
    mark('workload stopped');
    const live = await runTotes(['verify', '--source', source.url, '--warehouse', warehouse.url, '--wait', '120'], {}, 180_000);
    expect(`${live.stdout.slice(-4_000)}${live.stderr.slice(-2_000)} (exit ${live.code} ${live.signal})`, 'verify of the live warehouse').toMatch(
      /verify: PASSED/,
    );

    // the whole stream archived: capture stops, then the archiver delivers its buffer on SIGTERM
    await capture.kill('SIGTERM');
    await sleep(3_000);
    await archiver.kill('SIGTERM');
    mark('live verified');
    const final = await replay(['--rebuild', '--no-switch', '--rebuild-schema', 'totes_rebuild']);
    expect(final.code, final.stdout + final.stderr).toBe(0);
    const rebuilt = await runTotes(['verify', '--source', source.url, '--warehouse', warehouse.url, '--schema', 'totes_rebuild', '--wait', '0'], {}, 180_000);
    expect(`${rebuilt.stdout.slice(-4_000)}${rebuilt.stderr.slice(-2_000)} (exit ${rebuilt.code} ${rebuilt.signal})`, 'verify of the rebuild').toMatch(
      /verify: PASSED/,
    );

    mark('rebuild verified');
    const differences = [];
    for (const table of [...Object.keys(LOAD_TABLES), ...HISTORY_TABLES.map(historyName), 'dim_date'])
      differences.push(await tableDifferences(wh, table, 'public', 'totes_rebuild'));
    const differing = differences.filter((d) => d.onlyA.length + d.onlyB.length > 0);
    const listed = (ds: typeof differing) =>
      ds.map((d) => `${d.table}: ${d.onlyA.length} live only, ${d.onlyB.length} rebuilt only, e.g. ${JSON.stringify([d.onlyA[0], d.onlyB[0]])}`).join('\n');
    expect(listed(differing), 'live and rebuilt differ, tombstones and histories included').toBe('');
    const facts = (await wh.query(`SELECT count(*)::int AS n FROM public.fact_sales_order`)).rows[0].n;
    console.info(
      `rebuild: workload ${workload.counts.committed} transactions; ${facts} sales order versions; ${`${early.stdout}${early.stderr}`.match(/switched in after .*/)?.[0]}`,
    );
    expect(workload.counts.committed).toBeGreaterThan(500);
  });
});
