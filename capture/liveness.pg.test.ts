/**
 * Capture on a source path that goes silent (black-holed: no bytes, no FIN, no RST, as a NAT
 * idle timeout or a failover leaves it), `totes run capture` as a process through a TCP proxy:
 * /health says 503 within the silence bound, the connection is opened again in-process (the
 * START_REPLICATION of an attempt that gets no answer bounded the same way), the slot is taken
 * again once the server lets go of it, and the stream ends with every change written meanwhile.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../formats/change-event.ts';
import type pg from '../lib/pg.ts';
import { inTransaction, poolFor } from '../lib/pg.ts';
import { sleep } from '../lib/retry.ts';
import { freePort } from '../local/servers.ts';
import { createTotesys, scaledSizes } from '../totesys/business.ts';
import { runCapture, type CaptureChild } from '../test/capture-process.ts';
import { createDatabase, quiesce, startLocalAws, type LocalAws } from '../test/harness.ts';
import { readStream } from '../test/process.ts';
import { startProxy } from '../test/tcp-proxy.ts';
import { until } from '../test/until.ts';
import { CAPTURE_STATE_DDL, createPublicationSql } from './source-setup.ts';

const STREAM = 'changes';
const SILENCE_SECONDS = 2;

interface Health {
  status: number;
  state: string;
  reconnects: number;
}

describe('capture when the path to the source goes silent', () => {
  let aws: LocalAws;
  let source: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  let child: CaptureChild | null = null;
  const writers: (() => Promise<number>)[] = [];

  beforeAll(async () => {
    [source, aws] = await Promise.all([createDatabase('liveness'), startLocalAws({ stream: STREAM, shards: 1, buckets: [] })]);
    pool = poolFor(source.url, 2);
    await inTransaction(pool, async (db) => {
      await createTotesys(db, { seed: 17, sizes: scaledSizes(0.002) });
      await db.query(CAPTURE_STATE_DDL);
      await db.query(createPublicationSql('totes_cdc'));
    });
    const url = new URL(source.url);
    proxy = await startProxy({ host: url.hostname, port: Number(url.port) });
  });
  afterEach(async () => {
    for (const stop of writers.splice(0)) await stop().catch(() => undefined);
    if (child?.running()) {
      child.child.kill('SIGKILL');
      await child.exited;
    }
    await proxy.close();
  });
  afterAll(async () => {
    await pool?.end();
    await aws?.stop();
    if (source) await quiesce(source.url).catch(() => undefined);
    await source?.drop();
  });

  /** Capture through the proxy; `urlOptions` are server settings for its connections. */
  async function startCapture(slot: string, urlOptions = '') {
    await proxy.open();
    const url = new URL(source.url);
    url.port = String(proxy.port);
    if (urlOptions) url.searchParams.set('options', urlOptions);
    const port = await freePort();
    const proc = runCapture({
      TOTES_SOURCE_URL: url.toString(),
      TOTES_STREAM_NAME: STREAM,
      TOTES_KINESIS_ENDPOINT: aws.kinesisEndpoint,
      TOTES_SLOT_NAME: slot,
      TOTES_HEALTH_PORT: String(port),
      TOTES_HEARTBEAT_SECONDS: '1',
      TOTES_SOURCE_SILENCE_SECONDS: String(SILENCE_SECONDS),
    });
    child = proc;
    const health = async (): Promise<Health> => {
      if (!proc.running()) throw new Error(`capture exited:\n${proc.out.stderr.slice(-3000)}\n${proc.out.stdout.slice(-3000)}`);
      const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2_000) }).catch(async (err) => {
        await proc.exitWithin(1_000);
        throw new Error(`${err.message}; capture ${proc.running() ? 'runs' : 'exited'}:\n${proc.out.stderr.slice(-3000)}\n${proc.out.stdout.slice(-3000)}`);
      });
      return { status: res.status, ...((await res.json()) as { state: string; reconnects: number }) };
    };
    await until(
      'capture to stream',
      async () => (await health().catch((err) => (/exited/.test(err.message) ? Promise.reject(err) : null)))?.status === 200,
      60_000,
      100,
    );
    return { proc, health };
  }

  /** Updates one row's units_sold to 1, 2, 3, … every 50 ms, straight to the source (not through the proxy), until stopped. */
  function writeSteadily(salesOrderId: number) {
    let written = 0;
    const stop = new AbortController();
    const done = (async () => {
      while (!stop.signal.aborted) {
        await pool.query('UPDATE sales_order SET units_sold = $2, last_updated = now() WHERE sales_order_id = $1', [salesOrderId, ++written]);
        await sleep(50, stop.signal);
      }
    })();
    const stopWriting = async () => {
      stop.abort();
      await done;
      return written;
    };
    writers.push(stopWriting);
    return { stop: stopWriting };
  }

  /** Every value 1…written of the row's units_sold reached the stream. */
  async function expectEveryUpdateStreamed(salesOrderId: number, written: number) {
    const seen = new Set<number>();
    await until(
      `all ${written} updates in the stream`,
      async () => {
        for (const e of await readStream(aws.kinesisEndpoint, STREAM)) {
          const change = e as ChangeEvent;
          if (change.kind === 'change' && change.table === 'sales_order' && change.op === 'u' && Number(change.key.sales_order_id) === salesOrderId)
            seen.add(Number(change.after!.units_sold));
        }
        return seen.size >= written;
      },
      30_000,
      500,
    );
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: written }, (_, i) => i + 1));
  }

  async function silentWithin(health: () => Promise<Health>): Promise<{ ms: number; state: string }> {
    const from = Date.now();
    let last: Health | null = null;
    await until(
      'health to say 503',
      async () => {
        last = await health();
        return last.status === 503;
      },
      (SILENCE_SECONDS + 10) * 1000,
      100,
    );
    return { ms: Date.now() - from, state: last!.state };
  }

  it('goes 503 within the bound, retries a START_REPLICATION that gets no answer, and streams again in-process when the path returns', async () => {
    const { proc, health } = await startCapture(`live_${source.name}`);
    const pid = proc.child.pid;
    const { rows } = await pool.query('SELECT min(sales_order_id)::int AS id FROM sales_order');
    const writer = writeSteadily(rows[0].id);
    await sleep(1_000);

    proxy.blackHole();
    const silent = await silentWithin(health);
    expect(silent.state).toBe('reconnecting');
    expect(silent.ms, 'health says 503 within the silence bound, and a second or so').toBeLessThan((SILENCE_SECONDS + 1.5) * 1000);
    // long enough for attempts to connect again to meet the silence too
    await sleep(3 * SILENCE_SECONDS * 1000);
    proxy.restore();
    await until('streaming again', async () => (await health()).status === 200, 30_000, 100);
    const written = await writer.stop();

    const after = await health();
    expect(after).toMatchObject({ state: 'streaming', reconnects: 1 });
    expect(proc.running() && proc.child.pid === pid, 'the same process streams again').toBe(true);
    const lines = proc.logLines();
    expect(lines.some((l) => /lost; connecting again/.test(l.msg) && /nothing from the source for 2 s/.test(String(l.err)))).toBe(true);
    expect(
      lines.some((l) => /cannot take the slot again yet/.test(l.msg) && /nothing from the source/.test(String(l.err))),
      'an attempt whose START_REPLICATION got no answer ended at the bound and was retried',
    ).toBe(true);
    await expectEveryUpdateStreamed(rows[0].id, written);
  });

  it('takes the slot again through a fresh path once the server lets go of it (the old walsender holds it: SQLSTATE 55006)', async () => {
    // the server ends the dead connection's walsender only after wal_sender_timeout
    const { proc, health } = await startCapture(`fresh_${source.name}`, '-c wal_sender_timeout=10s');
    const { rows } = await pool.query('SELECT max(sales_order_id)::int AS id FROM sales_order');
    const writer = writeSteadily(rows[0].id);
    await sleep(1_000);

    proxy.blackHole();
    await silentWithin(health);
    proxy.restore('silent'); // new connections pass; the old one stays half-open
    await until('streaming again', async () => (await health()).status === 200, 30_000, 100);
    const written = await writer.stop();

    expect(await health()).toMatchObject({ state: 'streaming', reconnects: 1 });
    expect(
      proc.logLines().some((l) => /cannot take the slot again yet/.test(l.msg) && /is active for PID/.test(String(l.err))),
      'the slot was still held by the old walsender, and taking it was retried',
    ).toBe(true);
    await expectEveryUpdateStreamed(rows[0].id, written);
  });
});
