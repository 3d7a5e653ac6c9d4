/** `node bin/totes.mjs run capture` as a child process, as ECS runs it, with its output kept for assertions. */
import { sleep } from '../lib/retry.ts';
import { startTotes, type TotesProcess } from './totes-process.ts';

export function runCapture(env: Record<string, string | undefined>) {
  const proc: TotesProcess = startTotes(['run', 'capture'], env);
  /** The exit, or null if the process is still running after `ms`. */
  const exitWithin = (ms: number) => Promise.race([proc.exited, sleep(ms).then(() => null)]);
  /** The JSON log lines written so far. */
  const logLines = () =>
    proc.out.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; [k: string]: unknown });
  return { ...proc, exitWithin, logLines };
}

export type CaptureChild = ReturnType<typeof runCapture>;
