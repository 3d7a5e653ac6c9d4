/** The Parquet value conversions stay exact on every path: short and long money, every time fraction, repeated values. */
import { describe, expect, it } from 'vitest';
import type { LoadRow } from './load-tables.ts';
import { decodeParquet, encodeParquet, moneyToUnscaled, timeToMillis, unscaledToMoney } from './parquet.ts';

describe('parquet value conversions', () => {
  it('reads numeric(10,2) text as exact cents, on both sides of the float64 limit', () => {
    for (let cents = -100_000; cents <= 100_000; cents += 7) expect(moneyToUnscaled(unscaledToMoney(BigInt(cents)))).toBe(BigInt(cents));
    expect(moneyToUnscaled('3.9')).toBe(390n);
    expect(moneyToUnscaled('3')).toBe(300n);
    expect(moneyToUnscaled('-0.05')).toBe(-5n);
    expect(moneyToUnscaled('9999999999999.99')).toBe(999999999999999n);
    expect(moneyToUnscaled('99999999999999.99')).toBe(9999999999999999n);
    expect(moneyToUnscaled('123456789012345678.91')).toBe(12345678901234567891n);
    for (const bad of ['', '1.234', 'abc', '1e3', '.5']) expect(() => moneyToUnscaled(bad), bad).toThrow(/not a numeric/);
  });

  it('reads time text to the millisecond, dropping digits past it', () => {
    expect(timeToMillis('09:15:02')).toBe(33_302_000);
    expect(timeToMillis('09:15:02.1')).toBe(33_302_100);
    expect(timeToMillis('09:15:02.12')).toBe(33_302_120);
    expect(timeToMillis('09:15:02.123')).toBe(33_302_123);
    expect(timeToMillis('23:59:59.999999')).toBe(86_399_999);
    for (const bad of ['9:15:02', '09:15:02.', '09:15:02.1234567']) expect(() => timeToMillis(bad), bad).toThrow(/not a time/);
  });

  it('round-trips repeated and distinct values and nulls, each row its own', async () => {
    const prices = ['3.99', '1000.00', null, '3.99', '0.01', '1000.00'];
    const dates = ['2024-05-01', '2024-05-01', '1999-12-31', null, '2024-05-01', '2024-02-29'];
    const times = ['09:15:02.123', '09:15:02.123', '00:00:00', '23:59:59.5', null, '09:15:02.123'];
    const timesRead = ['09:15:02.123', '09:15:02.123', '00:00:00.000', '23:59:59.500', null, '09:15:02.123'];
    const rows = prices.map(
      (price, i) =>
        ({
          payment_id: i + 1,
          created_date: dates[i],
          created_time: times[i],
          last_updated_date: dates[(i + 1) % 6],
          last_updated_time: times[(i + 2) % 6],
          transaction_id: i,
          counterparty_id: 1,
          payment_amount: price,
          currency_id: 1,
          payment_type_id: 1,
          paid: i % 2 === 0,
          payment_date: dates[(i + 3) % 6],
          source_op: 'c',
          source_lsn: '0/16B3748',
          source_pos: i,
          source_commit_time: '2024-05-01T09:15:02.123456Z',
          unchanged: null,
          moved_key: null,
        }) as unknown as LoadRow,
    );
    const back = await decodeParquet('fact_payment', encodeParquet('fact_payment', rows));
    expect(back).toEqual(rows.map((r, i) => ({ ...r, created_time: timesRead[i], last_updated_time: timesRead[(i + 2) % 6] })));
  });
});
