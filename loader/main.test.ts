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

  it('publishes what was loaded since the last line, LoaderGapAgeSeconds (0 without a gap), and freshness when known', () => {
    const before = { batches: 2, truncates: 1, rowsEnded: 10, unprovenJunctions: 0 };
    const none = { watermarkLsn: '0/10', watermarkCommitTime: 'x', lagSeconds: 4, gapShards: 0, gapSeconds: null };
    expect(loaderMetrics({ batches: 5, truncates: 2, rowsEnded: 17, unprovenJunctions: 2 }, before, none)).toEqual({
      BatchesLoaded: 3,
      Truncates: 1,
      RowsEnded: 7,
      WarehouseUnreachable: 0,
      UnprovenJunctions: 2,
      LoaderGapAgeSeconds: 0,
      WarehouseFreshnessSeconds: 4,
    });
    const gap = { ...none, lagSeconds: null, gapShards: 1, gapSeconds: 650 };
    expect(loaderMetrics(before, before, gap)).toEqual({
      BatchesLoaded: 0,
      Truncates: 0,
      RowsEnded: 0,
      WarehouseUnreachable: 0,
      UnprovenJunctions: 0,
      LoaderGapAgeSeconds: 650,
      WarehouseFreshnessSeconds: null,
    });
    // the warehouse did not answer: that, and no freshness figure (unknown is not zero)
    expect(loaderMetrics(before, before, null)).toMatchObject({ WarehouseUnreachable: 1, LoaderGapAgeSeconds: null, WarehouseFreshnessSeconds: null });
  });
});
