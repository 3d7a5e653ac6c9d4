/**
 * Test helper: one pipeline service as its own OS process, `node bin/totes.mjs run <service>`
 * configured from the environment as docker compose runs it, that a test can SIGKILL and
 * start again (compose's `restart: on-failure`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from '../lib/retry.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** `node bin/totes.mjs <args>` to its end: exit code and output. */
export function runTotes(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'totes.mjs'), ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env, TOTES_LOG_PRETTY: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => {
      output += c.toString('utf8');
    });
    child.stderr!.on('data', (c: Buffer) => {
      output += c.toString('utf8');
    });
    child.once('exit', (code) => resolve({ code, output }));
  });
}

export class ServiceProcess {
  private child: ChildProcess | null = null;
  private output = '';
  private killing = false;
  readonly starts: number[] = [];
  readonly kills: number[] = [];
  /** Exits the test did not cause (a crash, a failed start), with the output before them. */
  readonly unexpectedExits: string[] = [];
  exited: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly env: Record<string, string>,
    /** Waited for before each start (capture: its slot released by the killed walsender). */
    private readonly ready: () => Promise<void> = async () => undefined,
  ) {}

  get running(): boolean {
    return this.child !== null;
  }

  /** The last of its output, for a failure message. */
  tail(chars = 4_000): string {
    return this.output.slice(-chars);
  }

  async start(): Promise<void> {
    await this.ready();
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'totes.mjs'), 'run', this.name], {
      cwd: ROOT,
      env: { ...process.env, ...this.env, TOTES_LOG_LEVEL: process.env.TOTES_LOG_LEVEL ?? 'warn', TOTES_LOG_PRETTY: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString('utf8')).slice(-50_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = null;
        if (!this.killing) this.unexpectedExits.push(`${this.name} exited (code ${code}, signal ${signal}):\n${this.tail()}`);
        resolve();
      }),
    );
    this.child = child;
    this.starts.push(Date.now());
  }

  /** Send `signal` and wait for the process to end. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child) throw new Error(`${this.name} is not running: ${this.unexpectedExits.at(-1) ?? ''}`);
    this.killing = true;
    try {
      const exited = this.exited;
      child.kill(signal);
      await exited;
      if (signal === 'SIGKILL') this.kills.push(Date.now());
    } finally {
      this.killing = false;
    }
  }
}
