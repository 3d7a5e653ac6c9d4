/**
 * The capture service's production entry (the Fargate task; the image's CMD). It imports the
 * service and nothing else: `totes run capture` goes through cli/main.ts, which also loads the
 * local stack and its emulators.
 */
import { runCapture } from '../capture/main.ts';
import { ENV } from '../lib/config.ts';
import { runService } from './run-service.ts';

runService('capture', () => runCapture(), {
  [ENV.sourceUrl]: process.env[ENV.sourceUrl],
  [ENV.kinesisEndpoint]: process.env[ENV.kinesisEndpoint],
});
