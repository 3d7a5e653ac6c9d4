/** The EMF line, and the metric names typed at both ends (the type checks below fail `npm run lint` if they stop holding). */
import { describe, expect, it } from 'vitest';
import { emfLine, METRIC_NAMESPACE, type MetricLine, type MetricName } from './metrics.ts';

describe('metric names', () => {
  it('are typed: a name a service does not publish, or a line missing one, is a type error', () => {
    const alarmed: MetricName<'loader'> = 'WarehouseFreshnessSeconds';
    // @ts-expect-error capture publishes slot lag, not the loader
    const elsewhere: MetricName<'loader'> = 'SlotLagBytes';
    // @ts-expect-error no service publishes it
    const unknown: MetricName<'capture'> = 'SlotLag';
    // @ts-expect-error the processor's line has a figure (or null) for every metric it publishes
    const partial: MetricLine<'processor'> = { Events: 1 };
    expect([alarmed, elsewhere, unknown, partial]).toHaveLength(4);
  });
});

describe('emfLine', () => {
  it('publishes each figure with its unit under the service dimension, and leaves out a metric with none', () => {
    const line = JSON.parse(emfLine('processor', { Events: 12, DeadLetters: null, BatchFailures: null }, 1_000));
    expect(line).toEqual({
      _aws: { Timestamp: 1_000, CloudWatchMetrics: [{ Namespace: METRIC_NAMESPACE, Dimensions: [['Service']], Metrics: [{ Name: 'Events', Unit: 'Count' }] }] },
      Service: 'processor',
      Events: 12,
    });
    const loader = JSON.parse(
      emfLine('loader', {
        BatchesLoaded: 1,
        Truncates: 0,
        RowsEnded: 0,
        WarehouseUnreachable: 0,
        UnprovenJunctions: 0,
        LoaderGapAgeSeconds: 0,
        WarehouseFreshnessSeconds: 4.5,
      }),
    );
    expect(loader._aws.CloudWatchMetrics[0].Metrics).toContainEqual({ Name: 'WarehouseFreshnessSeconds', Unit: 'Seconds' });
  });
});
