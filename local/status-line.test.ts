/** The status line says what the pipeline knows, a gap included. */
import { describe, expect, it } from 'vitest';
import { formatStatus, type StatusSnapshot } from './status-line.ts';

const base: StatusSnapshot = {
  captured: 51_870,
  streamEvents: 51_872,
  batches: 212,
  rowsLoaded: 51_860,
  deadLetters: 0,
  slotLagBytes: 3_100,
  freshnessSeconds: 0.6,
  gapShards: 0,
  gapSeconds: null,
};

describe('status line', () => {
  it('shows freshness, and no gap when there is none', () => {
    expect(formatStatus(base)).toBe('captured 51,870 │ in stream 51,872 │ batches 212 │ rows loaded 51,860 │ slot lag 3 KiB │ freshness 0.6s');
  });

  it('shows a gap with its age beside a freshness that stopped moving', () => {
    expect(formatStatus({ ...base, freshnessSeconds: 190, gapShards: 1, gapSeconds: 185.2 })).toBe(
      'captured 51,870 │ in stream 51,872 │ batches 212 │ rows loaded 51,860 │ slot lag 3 KiB │ freshness 3m10s │ GAP on 1 shard for 3m05s (watermark held)',
    );
  });

  it('names the first missing record and the command that closes the gap, when the loader knows it', () => {
    const gap = { shard: 'shardId-000000000001', missing: '49680740503826098098274453918303549317047654700329992210' };
    expect(formatStatus({ ...base, gapShards: 1, gapSeconds: 12, gap })).toContain(
      'GAP on 1 shard for 12.0s (watermark held): totes reprocess --shard shardId-000000000001 --from 49680740503826098098274453918303549317047654700329992210',
    );
  });

  it("counts dead letters with the newest one's row and reason, no value", () => {
    const newestDeadLetter = { table: 'sales_order', key: 12, column: 'agreed_payment_date', reason: 'agreed_payment_date: not a YYYY-MM-DD date: …' };
    expect(formatStatus({ ...base, deadLetters: 3, newestDeadLetter })).toBe(
      'captured 51,870 │ in stream 51,872 │ batches 212 │ rows loaded 51,860 │ slot lag 3 KiB │ freshness 0.6s │ dead letters 3 (newest: sales_order 12: agreed_payment_date: not a YYYY-MM-DD date: …)',
    );
  });
});
