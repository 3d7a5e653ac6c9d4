import { afterAll, describe, expect, it, vi } from 'vitest';
import { ReplayProgressBar } from './replay-progress.ts';
import type { ReplayProgress } from './replay-options.ts';

const at = (p: Partial<ReplayProgress>): ReplayProgress => ({
  phase: 'load',
  objectsRead: 0,
  objectsTotal: 40,
  bytesRead: 0,
  bytesTotal: 8 * 2 ** 20,
  eventsRead: 0,
  eventsLoaded: 0,
  ...p,
});

describe('replay progress line', () => {
  const started = Date.parse('2024-05-01T09:00:00Z');
  vi.useFakeTimers({ now: started });
  afterAll(() => vi.useRealTimers());
  const bar = new ReplayProgressBar({ isTTY: false, write: () => true } as unknown as NodeJS.WriteStream);
  bar.update(at({}));

  it('measures the bar by the bytes listed and gives events as counts, never as a total not yet known', () => {
    const line = bar.format(at({ objectsRead: 10, bytesRead: 2 * 2 ** 20, eventsRead: 50_000, eventsLoaded: 40_000 }), started + 2_000);
    expect(line).toBe('load [######..................] 10/40 objects, 2.0/8.0 MiB │ 50,000 events read, 40,000 loaded │ 20,000 events/s │ ETA ~6s');
  });

  it('says what the check pass has read, and an ETA it cannot know yet as a dash', () => {
    expect(bar.format(at({ phase: 'check' }), started + 1_000)).toMatch(
      /^check \[\.+\] 0\/40 objects, 0\.0\/8\.0 MiB │ 0 events checked │ 0 events\/s │ ETA ~–$/,
    );
    expect(bar.format(at({ phase: 'list' }), started)).toBe('listing the archive…');
  });
});
