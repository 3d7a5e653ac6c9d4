import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type TotesConfig } from '../infra/config.ts';
import type { Loader } from '../loader/loader.ts';
import { deployedShape, runDeployedLoader } from './deployed-shape.ts';

describe('the deployed shape the bench emulates', () => {
  it('takes heartbeat, batch size and batching window from the configuration', () => {
    const config: TotesConfig = {
      ...DEFAULT_CONFIG,
      capture: { ...DEFAULT_CONFIG.capture, heartbeatSeconds: 3 },
      processor: { ...DEFAULT_CONFIG.processor, batchSize: 700, maxBatchingWindowSeconds: 4 },
    };
    expect(deployedShape(config)).toMatchObject({ heartbeatMs: 3_000, processorBatchSize: 700, batchingWindowMs: 4_000 });
  });

  it('runs the loader as a service where the configuration gives its idle pause, else on the schedule', () => {
    const { idlePollMs: _, ...scheduled } = DEFAULT_CONFIG.loader as TotesConfig['loader'] & { idlePollMs?: number };
    expect(deployedShape({ ...DEFAULT_CONFIG, loader: scheduled as TotesConfig['loader'] }).loader).toMatchObject({ kind: 'scheduled', everyMs: 60_000 });
    const service = { ...scheduled, idlePollMs: 700 } as TotesConfig['loader'];
    expect(deployedShape({ ...DEFAULT_CONFIG, loader: service }).loader).toEqual({ kind: 'continuous', idleMs: 700 });
  });

  it('on the schedule, a run loads until a pass finds nothing, then waits for the next run', async () => {
    const found = [3, 2, 0, 1, 0];
    const passes: number[] = [];
    const started = Date.now();
    const loader = {
      loadAvailable: async () => {
        passes.push(Date.now() - started);
        return found.shift() ?? 0;
      },
    } as unknown as Loader;
    const stop = new AbortController();
    const running = runDeployedLoader(loader, { kind: 'scheduled', everyMs: 300, runWindowMs: 200 }, stop.signal);
    await new Promise((r) => setTimeout(r, 450));
    stop.abort();
    await running;
    expect(passes.length).toBe(5);
    expect(passes.slice(0, 3).every((at) => at < 100)).toBe(true);
    expect(passes[3]).toBeGreaterThanOrEqual(290);
  });
});
