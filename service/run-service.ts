/**
 * How a production entry ends: a fatal condition ends the process with one log line saying what
 * is wrong (the stack too when it looks like a bug) and a non-zero exit, after which ECS
 * replaces the task and the alarms notice; a clean stop exits 0.
 */
import { describeFatal } from '../lib/fatal.ts';
import { log } from '../lib/log.ts';

/** `endpoints`: the variables naming what the service connects to, so an unreachable one is named. */
export function runService(name: string, run: () => Promise<void>, endpoints: Record<string, string | undefined>): void {
  run().then(
    () => log.flush(() => process.exit(0)),
    (err: unknown) => {
      const fatal = describeFatal(err, endpoints);
      log.fatal({ exitCode: fatal.exitCode, ...(fatal.expected ? {} : { stack: (err as Error).stack }) }, `${name} stopped: ${fatal.line}`);
      log.flush(() => process.exit(fatal.exitCode));
    },
  );
}
