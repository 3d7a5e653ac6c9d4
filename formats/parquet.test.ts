/** The money and time codecs, and load rows through Parquet and back, value for value. */
import { describe, expect, it } from 'vitest';
import { LOAD_TABLES, type LoadRow, type LoadTableName } from './load-tables.ts';
import { decodeParquet, encodeParquet, loadColumns, millisToTime, moneyToUnscaled, refusal, timeToMillis, unscaledToMoney } from './parquet.ts';

describe('money: numeric(10,2) text ⇄ unscaled cents', () => {
  it.each([
    ['99999999.99', 9_999_999_999n],
    ['-99999999.99', -9_999_999_999n],
    ['0.10', 10n],
    ['-0.01', -1n],
    ['0.00', 0n],
    ['1234.50', 123_450n],
    ['3.99', 399n],
  ])('%s is %d cents and back', (text, cents) => {
    expect(moneyToUnscaled(text)).toBe(cents);
    expect(unscaledToMoney(cents)).toBe(text);
  });

  it.each([
    ['0.1', 10n, '0.10'],
    ['5', 500n, '5.00'],
    ['-0', 0n, '0.00'],
    ['007.5', 750n, '7.50'],
  ])('reads the short form %s as %d cents, printed %s', (text, cents, printed) => {
    expect(moneyToUnscaled(text)).toBe(cents);
    expect(unscaledToMoney(cents)).toBe(printed);
  });

  it.each(['1.234', '1e3', '', ' 1.00', '1,00', 'NaN', '.5', '--1', '1.'])('refuses %j', (text) => {
    expect(() => moneyToUnscaled(text)).toThrow(/not a numeric\(10,2\)/);
  });
});

describe('time(3): text ⇄ milliseconds since midnight', () => {
  it.each([
    ['00:00:00', 0, '00:00:00.000'],
    ['09:15:02', 33_302_000, '09:15:02.000'], // a whole second has no fraction in Postgres's text
    ['09:15:02.1', 33_302_100, '09:15:02.100'],
    ['09:15:02.123', 33_302_123, '09:15:02.123'],
    ['23:59:59.999', 86_399_999, '23:59:59.999'],
  ])('%s is %d ms, printed %s', (text, ms, printed) => {
    expect(timeToMillis(text)).toBe(ms);
    expect(millisToTime(ms)).toBe(printed);
  });

  it('drops microseconds past the millisecond, never rounding into the next one', () => {
    expect(timeToMillis('23:59:59.999999')).toBe(86_399_999);
  });

  it.each(['9:15:02', '09:15', '09:15:02.', '09:15:02Z', '2024-05-01 09:15:02'])('refuses %j', (text) => {
    expect(() => timeToMillis(text)).toThrow(/not a time/);
  });
});

const PROVENANCE = {
  source_op: 'u',
  source_lsn: '00000016/B374D848',
  source_pos: 2_147_483_647,
  source_commit_time: '2024-05-01T09:15:02.456789Z',
  unchanged: null,
  moved_key: null,
};

/** A value of each column type that is easy to get wrong, per row. */
const SAMPLES: Record<string, unknown[]> = {
  int: [0, -2_147_483_648, 2_147_483_647],
  text: ['', 'O\'Brien "House" \\ \n Straße 東京 🧵', 'x'.repeat(10_000)],
  money: ['99999999.99', '-0.01', '0.10'],
  date: ['2024-02-29', '1969-12-31', '0001-01-01'],
  time: ['23:59:59.999', '00:00:00.000', '09:15:02.100'],
  bool: [true, false, true],
};

function rowsFor(table: LoadTableName): LoadRow[] {
  const rows = [0, 1, 2].map((i) => {
    const row: Record<string, unknown> = { ...PROVENANCE, source_pos: i };
    for (const [name, type] of Object.entries(LOAD_TABLES[table].columns)) row[name] = SAMPLES[type][i];
    return row as LoadRow;
  });
  const allNull = Object.fromEntries(Object.keys(LOAD_TABLES[table].columns).map((c) => [c, null]));
  return [...rows, { ...allNull, ...PROVENANCE, source_op: 'd', unchanged: ',address_line_2,' } as LoadRow];
}

describe('load rows through Parquet', () => {
  it.each(Object.keys(LOAD_TABLES) as LoadTableName[])('%s comes back value for value, nulls included', async (table) => {
    const rows = rowsFor(table);
    expect(await decodeParquet(table, encodeParquet(table, rows))).toEqual(rows);
  });

  it('writes every column with its logical type, business columns then provenance', () => {
    expect(loadColumns('fact_payment').map(([name]) => name)).toEqual([
      ...Object.keys(LOAD_TABLES.fact_payment.columns),
      'source_op',
      'source_lsn',
      'source_pos',
      'source_commit_time',
      'unchanged',
      'moved_key',
    ]);
  });

  it('keeps every amount exact across the whole numeric(10,2) range', async () => {
    let seed = 42;
    const next = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed;
    };
    const cents = () => ((BigInt(next()) * 2_147_483_648n + BigInt(next())) % 19_999_999_999n) - 9_999_999_999n; // -99999999.99 … 99999999.99
    const amounts = Array.from({ length: 5_000 }, () => unscaledToMoney(cents()));
    amounts.push('99999999.99', '-99999999.99', '0.01', '-0.01', '99999999.98', '0.00');
    const rows = amounts.map((payment_amount, i) => ({ payment_id: i, payment_amount, ...PROVENANCE }) as unknown as LoadRow);
    const back = await decodeParquet('fact_payment', encodeParquet('fact_payment', rows));
    expect(back.map((r) => r.payment_amount)).toEqual(amounts);
  });

  it('writes a time given without a fraction as the same instant', async () => {
    const row = { ...rowsFor('fact_sales_order')[0], created_time: '09:15:02', last_updated_time: '00:00:00' };
    const [back] = await decodeParquet('fact_sales_order', encodeParquet('fact_sales_order', [row]));
    expect([back.created_time, back.last_updated_time]).toEqual(['09:15:02.000', '00:00:00.000']);
  });

  it('refuses to write an amount that is not numeric(10,2)', () => {
    const row = { ...rowsFor('fact_payment')[0], payment_amount: '1.005' };
    expect(() => encodeParquet('fact_payment', [row])).toThrow(/not a numeric\(10,2\)/);
    // DECIMAL(10,2) in INT64 would take it, and the warehouse would then refuse the whole load
    expect(() => encodeParquet('fact_payment', [{ ...row, payment_amount: '100000000.00' }])).toThrow(/out of numeric\(10,2\) range/);
  });

  it.each([
    ['money', '99999999.99', null],
    ['money', '-99999999.99', null],
    ['money', '100000000', 'out of numeric(10,2) range: "100000000"'],
    ['money', 'NaN', 'not a numeric(10,2): "NaN"'],
    ['money', '-Infinity', 'not a numeric(10,2): "-Infinity"'],
    ['int', 2_147_483_647, null],
    ['int', -2_147_483_649, 'not a 32-bit integer: -2147483649'],
    ['int', '7', 'not a 32-bit integer: "7"'],
    ['text', 7, 'not text: 7'],
    ['bool', 't', 'not a boolean: "t"'],
    ['date', '2024-05-01', null],
    ['time', '25:00', 'not a time: "25:00"'],
    ['int', null, null],
  ] as const)('refusal(%s, %j) is %j', (type, value, why) => {
    expect(refusal(type, value)).toBe(why);
  });
});
