/**
 * Capture's memory, in its own process as it runs in production (`totes run capture`, with the
 * image's NODE_OPTIONS): peak RSS while it streams one very large transaction, and while Kinesis
 * stops answering for a while (a proxy in front of kinesalite holds every byte) as the source
 * keeps writing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../lib/retry.ts';
import { freePort } from '../local/servers.ts';
import { NullSink } from '../capture/sink.ts';
import { createCaptureSlot } from './capture-drain.ts';
import { createDatabase, STREAMS, type BenchEnvironment } from './environment.ts';
import { DEFAULT_CONFIG } from '../infra/config.ts';
import { nodeOptions } from '../infra/image.ts';
import { StallProxy } from './stall-proxy.ts';
import { bulkSql, prepareSource } from './workloads.ts';

export interface RssFigures {
  maxMb: number;
  /** What the capture process ran with: the task's NODE_OPTIONS. */
  nodeOptions: string;
  bigTransaction: { rows: number; seconds: number; startMb: number; maxMb: number };
  stall: { seconds: number; rowsWrittenMeanwhile: number; startMb: number; maxMb: number; endMb: number; maxAfterResumeMb: number };
}

/**
 * NODE_OPTIONS of the capture task (infra/image.ts, from capture.memoryMiB): V8 paces its
 * collections by the heap's maximum, so without them the figure would be of this machine's
 * default heap, not the task's.
 */
function imageNodeOptions(): string {
  return nodeOptions(DEFAULT_CONFIG.capture.memoryMiB);
}

function rssMb(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

/** Samples the process's RSS every 100 ms until stopped; returns the peak. */
function sampleRss(pid: number): { stop: () => number } {
  let max = rssMb(pid);
  const timer = setInterval(() => {
    max = Math.max(max, rssMb(pid));
  }, 100);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(max, rssMb(pid));
    },
  };
}

interface Health {
  state: string;
  changes: number;
}

async function health(port: number): Promise<Health | null> {
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as Health;
  } catch {
    return null; // not listening yet
  }
}

async function waitFor(what: string, port: number, ok: (h: Health) => boolean, child: ChildProcess, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`capture process exited (${child.exitCode}) while waiting for ${what}`);
    const h = await health(port);
    if (h && ok(h)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

export async function measureCaptureRss(
  env: BenchEnvironment,
  opts: { bigRows: number; stallSeconds: number; stallRows: number },
  say: (line: string) => void,
): Promise<RssFigures> {
  const { url, client } = await createDatabase(env.source, 'rss');
  await prepareSource(client);
  // The service's state schema and slot, made in-process: `totes run capture` expects a DBA to have prepared them.
  await createCaptureSlot(url, 'rss', new NullSink());
  const kinesis = new StallProxy(Number(new URL(env.kinesisEndpoint).port));
  const proxyPort = await freePort();
  await kinesis.listen(proxyPort);
  const healthPort = await freePort();
  const nodeOptions = imageNodeOptions();
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'bin', 'totes.mjs'), 'run', 'capture'], {
    env: {
      ...process.env,
      NODE_OPTIONS: [process.env.NODE_OPTIONS, nodeOptions].filter(Boolean).join(' '),
      TOTES_SOURCE_URL: url,
      TOTES_STREAM_NAME: STREAMS.rss,
      TOTES_KINESIS_ENDPOINT: `http://127.0.0.1:${proxyPort}`,
      TOTES_HEALTH_PORT: String(healthPort),
      TOTES_SLOT_NAME: 'rss',
      TOTES_LOG_LEVEL: 'warn',
      TOTES_LOG_PRETTY: '0',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    await waitFor('capture to stream', healthPort, (h) => h.state === 'streaming', child);
    const pid = child.pid!;

    say(`rss: one transaction of ${opts.bigRows.toLocaleString()} rows`);
    const bigStartMb = rssMb(pid);
    let sampler = sampleRss(pid);
    const bigStarted = Date.now();
    await client.query(bulkSql(opts.bigRows));
    await waitFor('the big transaction', healthPort, (h) => h.changes >= opts.bigRows, child);
    const bigSeconds = (Date.now() - bigStarted) / 1000;
    const bigMaxMb = sampler.stop();

    say(`rss: Kinesis stalled for ${opts.stallSeconds} s while ${opts.stallRows.toLocaleString()} rows are written`);
    const stallStartMb = rssMb(pid);
    sampler = sampleRss(pid);
    kinesis.stall();
    await client.query(bulkSql(opts.stallRows));
    await sleep(opts.stallSeconds * 1000);
    const stallEndMb = rssMb(pid);
    const stallMaxMb = sampler.stop();
    sampler = sampleRss(pid);
    kinesis.resume();
    await waitFor('the backlog after the stall', healthPort, (h) => h.changes >= opts.bigRows + opts.stallRows, child);
    const afterMaxMb = sampler.stop();
    return {
      maxMb: Math.max(bigMaxMb, stallMaxMb, afterMaxMb),
      nodeOptions,
      bigTransaction: { rows: opts.bigRows, seconds: bigSeconds, startMb: bigStartMb, maxMb: bigMaxMb },
      stall: {
        seconds: opts.stallSeconds,
        rowsWrittenMeanwhile: opts.stallRows,
        startMb: stallStartMb,
        maxMb: stallMaxMb,
        endMb: stallEndMb,
        maxAfterResumeMb: afterMaxMb,
      },
    };
  } finally {
    kinesis.resume();
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
    await kinesis.close();
    await client.end();
  }
}
