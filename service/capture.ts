/**
 * The capture service's production entry (the Fargate task; the image's CMD). It imports the
 * service and nothing else: `totes run capture` goes through cli/main.ts, which also loads the
 * local stack and its emulators. A fatal condition ends the process with one log line saying
 * what is wrong, and a non-zero exit: ECS then replaces the task and the alarms notice.
 */
import { runCapture } from '../capture/main.ts';
import { ConfigError } from '../lib/config.ts';
import { log } from '../lib/log.ts';

runCapture().catch((err: Error) => {
  if (err instanceof ConfigError) log.fatal(`configuration error: ${err.message}`);
  else log.fatal({ err }, `capture stopped: ${err.message}`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
