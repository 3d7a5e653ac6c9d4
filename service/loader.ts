/**
 * The loader's production entry (the Fargate loader service: the same image as capture, run as
 * `node loader.cjs`). It loads every new micro-batch as soon as it is listed, continuously, and
 * on SIGTERM finishes the load in progress and exits 0.
 */
import { ENV } from '../lib/config.ts';
import { runLoader } from '../loader/main.ts';
import { runService } from './run-service.ts';

const stopped = new Promise<void>((resolve) => {
  process.once('SIGTERM', () => resolve());
  process.once('SIGINT', () => resolve());
});

runService('loader', () => runLoader(process.env, stopped), {
  [ENV.warehouseUrl]: process.env[ENV.warehouseUrl],
  [ENV.s3Endpoint]: process.env[ENV.s3Endpoint],
  [ENV.kinesisEndpoint]: process.env[ENV.kinesisEndpoint],
});
