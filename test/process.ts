/** Test helpers: a program as its own OS process with its output kept, polling, and the stream's contents. */
import { spawn } from 'node:child_process';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } from '@aws-sdk/client-kinesis';
import { decodeRecord, type StreamEvent } from '../formats/change-event.ts';
import { kinesisClient } from '../lib/aws.ts';
import { sleep } from '../lib/retry.ts';

export interface RunningProcess {
  out: { stdout: string; stderr: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running(): boolean;
  kill(signal?: NodeJS.Signals): void;
}

/** `node args...` (this process's Node binary) in `cwd`, with only `env` plus PATH and HOME; JSON logs. */
export function startNode(args: string[], opts: { cwd: string; env: Record<string, string | undefined> }): RunningProcess {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TOTES_LOG_PRETTY: '0', TOTES_LOG_LEVEL: 'info' };
  for (const [k, v] of Object.entries(opts.env)) if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, args, { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (b: Buffer) => {
    out.stdout = (out.stdout + b.toString('utf8')).slice(-100_000);
  });
  child.stderr!.on('data', (b: Buffer) => {
    out.stderr = (out.stderr + b.toString('utf8')).slice(-100_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { out, exited, running: () => child.exitCode === null && child.signalCode === null, kill: (signal = 'SIGTERM') => child.kill(signal) };
}

/** Poll `check` until it holds, or fail naming `what`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Every event in a stream, from every shard, from the start. */
export async function readStream(endpoint: string, streamName: string): Promise<StreamEvent[]> {
  const client = kinesisClient({ kinesisEndpoint: endpoint });
  try {
    const events: StreamEvent[] = [];
    const { Shards } = await client.send(new ListShardsCommand({ StreamName: streamName }));
    for (const shard of Shards ?? []) {
      let iterator = (await client.send(new GetShardIteratorCommand({ StreamName: streamName, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' })))
        .ShardIterator;
      while (iterator) {
        const out = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
        for (const r of out.Records ?? []) events.push(...decodeRecord(Buffer.from(r.Data!).toString('utf8')));
        if ((out.Records ?? []).length === 0 && (out.MillisBehindLatest ?? 0) === 0) break;
        iterator = out.NextShardIterator;
      }
    }
    return events;
  } finally {
    client.destroy();
  }
}
