/**
 * Test helpers: a program as its own OS process with its output kept, a pipeline service that
 * a test SIGKILLs and starts again, polling, and the stream's contents.
 */
import { spawn } from 'node:child_process';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } from '@aws-sdk/client-kinesis';
import { decodeRecord, type StreamEvent } from '../formats/change-event.ts';
import { kinesisClient } from '../lib/aws.ts';
import { startTotes, type TotesProcess } from './totes-process.ts';

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

/**
 * One pipeline service as its own OS process, `totes run <service>` configured from the
 * environment as docker compose and ECS run it, that a test can SIGKILL and start again
 * (compose's `restart: on-failure`).
 */
export class ServiceProcess {
  /** The process last started, running or not. */
  private proc: TotesProcess | null = null;
  private alive = false;
  private killing = false;
  readonly starts: number[] = [];
  readonly kills: number[] = [];
  /** Exits the test did not cause (a crash, a failed start), with the output before them. */
  readonly unexpectedExits: string[] = [];
  /** Resolves when the current process has exited. */
  exited: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly env: Record<string, string>,
    /** Waited for before each start (capture: its slot released by the killed walsender). */
    private readonly ready: () => Promise<void> = async () => undefined,
  ) {}

  /** Waited for before each start; what it returns is added to that start's environment. */
  protected async beforeStart(): Promise<Record<string, string>> {
    await this.ready();
    return {};
  }

  get running(): boolean {
    return this.alive;
  }

  /** The last of its output (stdout, then stderr), for a failure message. */
  tail(chars = 4_000): string {
    return this.proc ? `${this.proc.out.stdout.slice(-chars)}${this.proc.out.stderr.slice(-chars)}` : '';
  }

  async start(): Promise<void> {
    const extra = await this.beforeStart();
    const proc = startTotes(['run', this.name], { ...this.env, ...extra, TOTES_LOG_LEVEL: process.env.TOTES_LOG_LEVEL ?? 'warn' });
    this.exited = proc.exited.then(({ code, signal }) => {
      if (this.proc === proc) this.alive = false;
      if (!this.killing) this.unexpectedExits.push(`${this.name} exited (code ${code}, signal ${signal}):\n${this.tail()}`);
    });
    this.proc = proc;
    this.alive = true;
    this.starts.push(Date.now());
  }

  /** Send `signal` and wait for the process to end. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.alive) throw new Error(`${this.name} is not running: ${this.unexpectedExits.at(-1) ?? ''}`);
    this.killing = true;
    try {
      const exited = this.exited;
      proc.child.kill(signal);
      await exited;
      if (signal === 'SIGKILL') this.kills.push(Date.now());
    } finally {
      this.killing = false;
    }
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
