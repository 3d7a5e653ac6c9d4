/**
 * Which source values the warehouse can hold, as verify reads data-model.md §1-2 for itself (not
 * the pipeline's parsers, which it checks): a row with a value that fails here is one the
 * pipeline must set aside as a dead letter. Each check takes the text Postgres prints (DateStyle
 * ISO) and says why the warehouse cannot hold it, or null when it can. Every checked column is
 * NOT NULL in the source, so a null is no value either.
 */
export type Check = (value: string | null) => string | null;

const TIMESTAMP = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const MONEY = /^-?\d{1,8}(?:\.\d{1,2})?$/;
const CURRENCY_CODE = /^[A-Za-z]{3}$/;

const currencyNames = new Intl.DisplayNames(['en'], { type: 'currency' });

const nonNull =
  (check: (value: string) => string | null): Check =>
  (value) =>
    value === null ? 'null in a NOT NULL column' : check(value);

/**
 * A timestamp(3) split into the warehouse's date and time(3), or null when it has no such
 * split: infinity, BC, or a year past 9999 (ISO prints them "infinity", "… BC", five digits).
 */
export function splitTimestamp(value: string): [date: string, time: string] | null {
  const m = TIMESTAMP.exec(value);
  return m ? [m[1], m[2]] : null;
}

export const timestamp: Check = nonNull((v) => (splitTimestamp(v) ? null : 'not a timestamp from year 1 to 9999'));

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** The agreed and payment dates: text in YYYY-MM-DD form (§1), a day of the Gregorian calendar (there is no year 0). */
export const yyyyMmDd: Check = nonNull((v) => {
  const m = DATE.exec(v);
  if (!m) return 'not a YYYY-MM-DD date';
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month) ? null : 'no such day in the calendar';
});

/** Money is numeric(10,2) (§1): NaN and ±Infinity, which a numeric column may hold, are no amount. */
export const money: Check = nonNull((v) => (MONEY.test(v) ? null : 'not a numeric(10,2) amount'));

/** dim_currency's name: the English name of the ISO 4217 code (§2), or null when there is none. */
export function currencyName(code: string): string | null {
  if (!CURRENCY_CODE.test(code)) return null;
  const name = currencyNames.of(code);
  return name && name.toUpperCase() !== code.toUpperCase() ? name : null;
}

export const currencyCode: Check = nonNull((v) => (currencyName(v) ? null : 'no ISO 4217 currency has this code'));
