/**
 * The capture service's production entry (the Fargate task; the image's CMD). It imports the
 * service and nothing else: `totes run capture` goes through cli/main.ts, which also loads the
 * local stack and its emulators. A fatal condition ends the process with one log line saying
 * what is wrong, and a non-zero exit: ECS then replaces the task and the alarms notice.
 */
import { runCapture } from '../capture/main.ts';
import { describeFatal } from '../lib/fatal.ts';
import { log } from '../lib/log.ts';

runCapture().catch((err: unknown) => {
  const fatal = describeFatal(err, { TOTES_SOURCE_URL: process.env.TOTES_SOURCE_URL, TOTES_KINESIS_ENDPOINT: process.env.TOTES_KINESIS_ENDPOINT });
  log.fatal({ exitCode: fatal.exitCode, ...(fatal.expected ? {} : { stack: (err as Error).stack }) }, `capture stopped: ${fatal.line}`);
  log.flush(() => process.exit(fatal.exitCode));
});
