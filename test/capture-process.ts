/** `node bin/totes.mjs run capture` as a child process, as ECS runs it, with its output kept for assertions. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from '../lib/retry.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

export function runCapture(env: Record<string, string | undefined>) {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, TOTES_LOG_PRETTY: '0', TOTES_LOG_LEVEL: 'info', ...env })) if (v !== undefined) childEnv[k] = v;
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'totes.mjs'), 'run', 'capture'], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (b: Buffer) => {
    out.stdout = (out.stdout + b.toString('utf8')).slice(-50_000);
  });
  child.stderr!.on('data', (b: Buffer) => {
    out.stderr = (out.stderr + b.toString('utf8')).slice(-50_000);
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  /** The exit, or null if the process is still running after `ms`. */
  const exitWithin = (ms: number) => Promise.race([exited, sleep(ms).then(() => null)]);
  /** The JSON log lines written so far. */
  const logLines = () =>
    out.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; [k: string]: unknown });
  return { child, out, exited, exitWithin, logLines, running: () => child.exitCode === null && child.signalCode === null };
}

export type CaptureChild = ReturnType<typeof runCapture>;
