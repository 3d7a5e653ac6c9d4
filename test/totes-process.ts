/** `node bin/totes.mjs ...` as its own process, as compose and the Fargate task run it; output kept for assertions. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface TotesProcess {
  child: ReturnType<typeof spawn>;
  out: { stdout: string; stderr: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  running(): boolean;
}

/** Runs `command` (a path under the repository and its arguments, default the totes CLI) with `env` over this process's environment (undefined removes a variable). */
export function startTotes(args: string[], env: Record<string, string | undefined>, command = [join(ROOT, 'bin', 'totes.mjs')]): TotesProcess {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, TOTES_LOG_PRETTY: '0', TOTES_LOG_LEVEL: 'info', ...env })) if (v !== undefined) childEnv[k] = v;
  const child = spawn(process.execPath, [...command, ...args], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (b: Buffer) => {
    out.stdout = (out.stdout + b.toString('utf8')).slice(-50_000);
  });
  child.stderr!.on('data', (b: Buffer) => {
    out.stderr = (out.stderr + b.toString('utf8')).slice(-50_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  return { child, out, exited, running: () => child.exitCode === null && child.signalCode === null };
}

/** Runs to its exit (killed after `ms`), and returns the exit status and output. */
export async function runTotes(args: string[], env: Record<string, string | undefined>, ms = 60_000, command?: string[]) {
  const proc = startTotes(args, env, command);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), ms);
  const exit = await proc.exited;
  clearTimeout(timer);
  return { code: exit.code, signal: exit.signal, ...proc.out };
}
