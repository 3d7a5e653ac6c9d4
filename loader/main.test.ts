/** The loader's configuration and metrics: the stream is required, and the gap metric always has a figure. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/config.ts';
import { loaderFromEnv, loaderMetrics } from './main.ts';

describe('loader configuration and metrics', () => {
  it('refuses to start without the stream it proves batches contiguous with, naming the variable', async () => {
    const env = { TOTES_WAREHOUSE_URL: 'postgres://x@127.0.0.1:1/w', TOTES_PROCESSED_BUCKET: 'processed' };
    await expect(loaderFromEnv(env, 1)).rejects.toThrow(ConfigError);
    await expect(loaderFromEnv(env, 1)).rejects.toThrow(/TOTES_STREAM_NAME is not set: set it to the Kinesis stream name/);
  });

  it('publishes LoaderGapAgeSeconds, 0 without a gap, and freshness when known', () => {
    const none = { watermarkLsn: '0/10', watermarkCommitTime: 'x', lagSeconds: 4, gapShards: 0, gapSeconds: null };
    expect(loaderMetrics(3, none)).toEqual({
      BatchesLoaded: { value: 3, unit: 'Count' },
      WarehouseUnreachable: { value: 0, unit: 'Count' },
      LoaderGapAgeSeconds: { value: 0, unit: 'Seconds' },
      WarehouseFreshnessSeconds: { value: 4, unit: 'Seconds' },
    });
    const gap = { ...none, lagSeconds: null, gapShards: 1, gapSeconds: 650 };
    expect(loaderMetrics(0, gap)).toEqual({
      BatchesLoaded: { value: 0, unit: 'Count' },
      WarehouseUnreachable: { value: 0, unit: 'Count' },
      LoaderGapAgeSeconds: { value: 650, unit: 'Seconds' },
    });
    // the warehouse did not answer: that, and no freshness figure (unknown is not zero)
    expect(loaderMetrics(2, null)).toEqual({ BatchesLoaded: { value: 2, unit: 'Count' }, WarehouseUnreachable: { value: 1, unit: 'Count' } });
  });
});
