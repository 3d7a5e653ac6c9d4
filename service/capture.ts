/**
 * The capture service's production entry (the Fargate task; the image's CMD). It imports the
 * service and nothing else: `totes run capture` goes through cli/main.ts, which also loads the
 * local stack and its emulators. A fatal condition ends the process with one log line saying
 * what is wrong, and a non-zero exit: ECS then replaces the task and the alarms notice.
 */
import { runCapture } from '../capture/main.ts';
import { ENV } from '../lib/config.ts';
import { describeFatal } from '../lib/fatal.ts';
import { log } from '../lib/log.ts';

runCapture().catch((err: unknown) => {
  const endpoints = { [ENV.sourceUrl]: process.env[ENV.sourceUrl], [ENV.kinesisEndpoint]: process.env[ENV.kinesisEndpoint] };
  const fatal = describeFatal(err, endpoints);
  log.fatal({ exitCode: fatal.exitCode, ...(fatal.expected ? {} : { stack: (err as Error).stack }) }, `capture stopped: ${fatal.line}`);
  log.flush(() => process.exit(fatal.exitCode));
});
