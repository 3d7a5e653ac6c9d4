/**
 * The deployed pipeline's pace, for the e2e freshness in the production settings: read at run
 * time from the one place they are declared (infra/config.ts's defaults, the loader's pace in
 * loader/main.ts), so the bench measures whatever is deployed now.
 */
import { DEFAULT_CONFIG, type TotesConfig } from '../infra/config.ts';
import { log } from '../lib/log.ts';
import { sleep } from '../lib/retry.ts';
import type { Loader } from '../loader/loader.ts';
import { REAL_KINESIS_ASK_INTERVAL_MS } from '../loader/main.ts';

/** Lambda's event source mapping polls each shard that is not behind about once a second. */
const MAPPING_POLL_MS = 1_000;
/** The scheduled loader Lambda: run every minute (infra/constructs/loader.ts), starting loads for up to 45 s (loader/lambda.ts). */
const LOADER_SCHEDULE = { everyMs: 60_000, runWindowMs: 45_000 };

/** How the loader runs: a service loading continuously, or the scheduled Lambda. */
export type LoaderShape = { kind: 'continuous'; idleMs: number } | ({ kind: 'scheduled' } & typeof LOADER_SCHEDULE);

export interface DeployedShape {
  heartbeatMs: number;
  processorBatchSize: number;
  batchingWindowMs: number;
  mappingPollMs: number;
  /** The loader's least time between two questions to one shard on real Kinesis. */
  loaderAskIntervalMs: number;
  loader: LoaderShape;
}

/** The loader as a service where the configuration declares its idle pause (loader.idlePollMs), else the scheduled Lambda. */
function loaderShape(loader: TotesConfig['loader'] & { idlePollMs?: number }): LoaderShape {
  return loader.idlePollMs !== undefined ? { kind: 'continuous', idleMs: loader.idlePollMs } : { kind: 'scheduled', ...LOADER_SCHEDULE };
}

export function deployedShape(config: TotesConfig = DEFAULT_CONFIG): DeployedShape {
  return {
    heartbeatMs: config.capture.heartbeatSeconds * 1_000,
    processorBatchSize: config.processor.batchSize,
    batchingWindowMs: config.processor.maxBatchingWindowSeconds * 1_000,
    mappingPollMs: MAPPING_POLL_MS,
    loaderAskIntervalMs: REAL_KINESIS_ASK_INTERVAL_MS,
    loader: loaderShape(config.loader),
  };
}

export const describeShape = (s: DeployedShape) =>
  `heartbeat ${s.heartbeatMs / 1_000} s, batch ${s.processorBatchSize} or ${s.batchingWindowMs / 1_000} s window, loader ${
    s.loader.kind === 'continuous' ? `continuous (${s.loader.idleMs} ms idle)` : `every ${s.loader.everyMs / 1_000} s until a pass finds nothing`
  }`;

/**
 * Runs `loader` as deployed until `signal`: continuously (the service's loop), or as the
 * scheduled Lambda does: a run every `everyMs` that loads until a pass finds nothing or
 * `runWindowMs` has passed; a failed run is left to the next.
 */
export async function runDeployedLoader(loader: Loader, shape: LoaderShape, signal: AbortSignal): Promise<void> {
  if (shape.kind === 'continuous') return loader.runLoop(signal, shape.idleMs);
  while (!signal.aborted) {
    const started = Date.now();
    try {
      while (Date.now() < started + shape.runWindowMs && !signal.aborted) if ((await loader.loadAvailable()) === 0) break;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'scheduled load failed; the next run takes over');
    }
    await sleep(started + shape.everyMs - Date.now(), signal);
  }
}
