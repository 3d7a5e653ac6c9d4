/**
 * verify's own reading of what the warehouse can hold: every dirty value the issue met in a real
 * totesys (dates people type, numeric NaN and the infinities, timestamps out of range) is named
 * with a reason, and every value the warehouse does hold passes.
 */
import { describe, expect, it } from 'vitest';
import { currencyCode, currencyName, money, splitTimestamp, timestamp, yyyyMmDd } from './warehouse-values.ts';

describe('what the warehouse can hold', () => {
  it('dates: YYYY-MM-DD days of the calendar from year 1 to 9999, nothing else', () => {
    for (const ok of ['2024-02-29', '2000-02-29', '0001-01-01', '9999-12-31', '2024-04-30']) expect(yyyyMmDd(ok), ok).toBeNull();
    for (const bad of ['TBC', '', ' 2024-01-01', '31/12/2024', '20240101', '2024-1-5', 'infinity', '-infinity', '10000-01-01', '2024-01-01 BC'])
      expect(yyyyMmDd(bad), bad).toBe('not a YYYY-MM-DD date');
    for (const bad of ['2024-02-30', '2023-02-29', '1900-02-29', '2024-04-31', '2024-13-01', '2024-00-10', '2024-01-00', '0000-01-01'])
      expect(yyyyMmDd(bad), bad).toBe('no such day in the calendar');
    expect(yyyyMmDd(null)).toBe('null in a NOT NULL column');
  });

  it('money: numeric(10,2), so NaN and the infinities are no amount', () => {
    for (const ok of ['3.50', '0.00', '-12.30', '99999999.99', '7']) expect(money(ok), ok).toBeNull();
    for (const bad of ['NaN', 'Infinity', '-Infinity', '123456789.00', '1.234', '']) expect(money(bad), bad).toBe('not a numeric(10,2) amount');
  });

  it('timestamps: split into date and time(3) when finite, AD and before year 10000', () => {
    expect(splitTimestamp('2024-05-01 09:15:02.123')).toEqual(['2024-05-01', '09:15:02.123']);
    expect(splitTimestamp('2024-05-01 09:15:02')).toEqual(['2024-05-01', '09:15:02']);
    for (const bad of ['infinity', '-infinity', '2024-05-01 09:15:02 BC', '10000-01-01 00:00:00'])
      expect(timestamp(bad), bad).toBe('not a timestamp from year 1 to 9999');
  });

  it('currencies: a code ISO 4217 names in English', () => {
    expect(currencyName('GBP')).toBe('British Pound');
    expect(currencyCode('EUR')).toBeNull();
    for (const bad of ['XYZ', 'A1', '', 'GB ']) expect(currencyCode(bad), bad).toBe('no ISO 4217 currency has this code');
  });
});
