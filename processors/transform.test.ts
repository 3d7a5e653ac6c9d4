/** The event → load row mapping: every source table, the derivations of data-model.md §2, and what is refused. */
import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Op, Row } from '../formats/change-event.ts';
import { SOURCE_TABLE_NAMES, type SourceTable } from '../formats/source-tables.ts';
import { changeEvent } from '../test/kinesis-events.ts';
import { MappingError, mapEvent, mapEvents, targetOf } from './transform.ts';

const SOURCE = { lsn: '00000000/016B3748', pos: 3, xid: 771, commitTime: '2024-05-01T09:15:02.456789Z' };
const PROVENANCE = { source_op: 'c', source_lsn: SOURCE.lsn, source_pos: 3, source_commit_time: SOURCE.commitTime, unchanged: null, moved_key: null };
const STAMPS = { created_at: '2024-05-01 09:15:02.123', last_updated: '2024-06-30 23:59:59' };
const SPLIT_STAMPS = { created_date: '2024-05-01', created_time: '09:15:02.123', last_updated_date: '2024-06-30', last_updated_time: '23:59:59' };

const event = (table: SourceTable, after: Row, op: Op = 'c', extra: Partial<ChangeEvent> = {}): ChangeEvent => ({
  ...changeEvent(table, op, after, SOURCE),
  ...extra,
});

/** For each of the 11 source tables: a source row and the load row it must become. */
const CASES: [SourceTable, Row, string, Record<string, unknown>][] = [
  [
    'address',
    {
      address_id: 7,
      address_line_1: '6826 Herzog Via',
      address_line_2: null,
      district: 'Avon',
      city: 'New Patienceburgh',
      postal_code: '28441',
      country: 'Turkey',
      phone: '1803 637401',
      ...STAMPS,
    },
    'dim_location',
    {
      location_id: 7,
      address_line_1: '6826 Herzog Via',
      address_line_2: null,
      district: 'Avon',
      city: 'New Patienceburgh',
      postal_code: '28441',
      country: 'Turkey',
      phone: '1803 637401',
    },
  ],
  [
    'department',
    { department_id: 2, department_name: 'Purchasing', location: 'Leds', manager: 'Naomi Lapaglia', ...STAMPS },
    'totes_department',
    { department_id: 2, department_name: 'Purchasing', location: 'Leds' },
  ],
  [
    'staff',
    { staff_id: 3, first_name: 'Jeanette', last_name: 'Erdman', department_id: 2, email_address: 'jeanette.erdman@terrifictotes.com', ...STAMPS },
    'dim_staff',
    { staff_id: 3, first_name: 'Jeanette', last_name: 'Erdman', email_address: 'jeanette.erdman@terrifictotes.com', department_id: 2 },
  ],
  [
    'counterparty',
    {
      counterparty_id: 4,
      counterparty_legal_name: 'Fahey and Sons',
      legal_address_id: 15,
      commercial_contact: 'Micheal Toy',
      delivery_contact: null,
      ...STAMPS,
    },
    'dim_counterparty',
    { counterparty_id: 4, counterparty_legal_name: 'Fahey and Sons', legal_address_id: 15 },
  ],
  ['currency', { currency_id: 1, currency_code: 'GBP', ...STAMPS }, 'dim_currency', { currency_id: 1, currency_code: 'GBP', currency_name: 'British Pound' }],
  [
    'design',
    { design_id: 8, ...STAMPS, design_name: 'Wooden', file_location: '/usr', file_name: 'wooden-20220717-npgz.json' },
    'dim_design',
    { design_id: 8, design_name: 'Wooden', file_location: '/usr', file_name: 'wooden-20220717-npgz.json' },
  ],
  [
    'payment_type',
    { payment_type_id: 1, payment_type_name: 'SALES_RECEIPT', ...STAMPS },
    'dim_payment_type',
    { payment_type_id: 1, payment_type_name: 'SALES_RECEIPT' },
  ],
  [
    'transaction',
    { transaction_id: 9, transaction_type: 'PURCHASE', sales_order_id: null, purchase_order_id: 5, ...STAMPS },
    'dim_transaction',
    { transaction_id: 9, transaction_type: 'PURCHASE', sales_order_id: null, purchase_order_id: 5 },
  ],
  [
    'sales_order',
    {
      sales_order_id: 11,
      ...STAMPS,
      design_id: 8,
      staff_id: 3,
      counterparty_id: 4,
      units_sold: 42_000,
      unit_price: '99999999.99',
      currency_id: 1,
      agreed_delivery_date: '2024-05-03',
      agreed_payment_date: '2024-05-04',
      agreed_delivery_location_id: 7,
    },
    'fact_sales_order',
    {
      sales_order_id: 11,
      ...SPLIT_STAMPS,
      sales_staff_id: 3, // renamed
      counterparty_id: 4,
      units_sold: 42_000,
      unit_price: '99999999.99',
      currency_id: 1,
      design_id: 8,
      agreed_payment_date: '2024-05-04',
      agreed_delivery_date: '2024-05-03',
      agreed_delivery_location_id: 7,
    },
  ],
  [
    'purchase_order',
    {
      purchase_order_id: 5,
      ...STAMPS,
      staff_id: 3,
      counterparty_id: 4,
      item_code: 'ZDOI5EA',
      item_quantity: 371,
      item_unit_price: '0.10',
      currency_id: 2,
      agreed_delivery_date: '2024-05-05',
      agreed_payment_date: '2024-05-08',
      agreed_delivery_location_id: 7,
    },
    'fact_purchase_order',
    {
      purchase_order_id: 5,
      ...SPLIT_STAMPS,
      staff_id: 3, // kept
      counterparty_id: 4,
      item_code: 'ZDOI5EA',
      item_quantity: 371,
      item_unit_price: '0.10',
      currency_id: 2,
      agreed_delivery_date: '2024-05-05',
      agreed_payment_date: '2024-05-08',
      agreed_delivery_location_id: 7,
    },
  ],
  [
    'payment',
    {
      payment_id: 12,
      ...STAMPS,
      transaction_id: 9,
      counterparty_id: 4,
      payment_amount: '-0.01',
      currency_id: 2,
      payment_type_id: 3,
      paid: false,
      payment_date: '2024-05-08',
      company_ac_number: 67305075,
      counterparty_ac_number: 31622269,
    },
    'fact_payment',
    {
      payment_id: 12,
      ...SPLIT_STAMPS,
      transaction_id: 9,
      counterparty_id: 4,
      payment_amount: '-0.01',
      currency_id: 2,
      payment_type_id: 3,
      paid: false,
      payment_date: '2024-05-08', // the account numbers are dropped
    },
  ],
];

describe('mapEvent', () => {
  it('covers every source table', () => {
    expect(CASES.map(([t]) => t).sort()).toEqual([...SOURCE_TABLE_NAMES].sort());
  });

  it.each(CASES)('maps %s onto its load table with the derivations of data-model.md §2', (table, after, target, expected) => {
    expect(targetOf(table)).toBe(target);
    const mapped = mapEvent(event(table, after));
    expect(mapped.table).toBe(target);
    expect(mapped.row).toStrictEqual({ ...expected, ...PROVENANCE });
  });

  it('carries the operation and position of the change', () => {
    const [, after] = CASES[0];
    expect(mapEvent(event('address', after, 'u')).row).toMatchObject({ source_op: 'u', source_pos: 3 });
    expect(mapEvent(event('address', after, 'r', { source: { ...SOURCE, pos: 0, xid: null } })).row).toMatchObject({ source_op: 'r', source_pos: 0 });
  });

  it('keeps milliseconds and whole seconds exactly, and microseconds should a column have them', () => {
    const at = (created_at: string) => mapEvent(event('sales_order', { ...CASES[8][1], created_at })).row;
    expect(at('2024-05-01 00:00:00')).toMatchObject({ created_date: '2024-05-01', created_time: '00:00:00' });
    expect(at('1999-12-31 23:59:59.999')).toMatchObject({ created_date: '1999-12-31', created_time: '23:59:59.999' });
    expect(at('2024-05-01 09:15:02.1')).toMatchObject({ created_time: '09:15:02.1' });
    expect(at('2024-05-01 09:15:02.123456')).toMatchObject({ created_time: '09:15:02.123456' });
  });

  it.each([
    ['USD', 'US Dollar'],
    ['EUR', 'Euro'],
    ['JPY', 'Japanese Yen'],
    ['CHF', 'Swiss Franc'],
    ['gbp', 'British Pound'],
  ])('names currency %s "%s", for any ISO 4217 code', (code, name) => {
    expect(mapEvent(event('currency', { currency_id: 5, currency_code: code, ...STAMPS })).row).toMatchObject({ currency_code: code, currency_name: name });
  });

  it('maps a delete to the key alone, marked d, with the before image or the event key', () => {
    const deleted = (before: Row | null) =>
      mapEvent({ v: 1, kind: 'change', op: 'd', table: 'sales_order', key: { sales_order_id: 11 }, before, after: null, source: SOURCE });
    expect(deleted({ sales_order_id: 11 })).toStrictEqual({ table: 'fact_sales_order', row: { sales_order_id: 11, ...PROVENANCE, source_op: 'd' } });
    expect(deleted(null).row).toStrictEqual({ sales_order_id: 11, ...PROVENANCE, source_op: 'd' });
    const address = mapEvent({
      v: 1,
      kind: 'change',
      op: 'd',
      table: 'address',
      key: { address_id: 7 },
      before: { address_id: 7 },
      after: null,
      source: SOURCE,
    });
    expect(address.row).toStrictEqual({ location_id: 7, ...PROVENANCE, source_op: 'd' }); // the key renamed as the table's
  });

  it('marks unchanged TOAST columns to keep, with null in their place, and never touches the event', () => {
    const [, row] = CASES[0];
    const { address_line_2, ...sent } = { ...row, address_line_2: 'x' };
    const change = event('address', sent, 'u', { unchanged: ['address_line_2'] });
    const mapped = mapEvent(change).row;
    expect(mapped).toMatchObject({ address_line_2: null, unchanged: ',address_line_2,', source_op: 'u' });
    expect(change.after).not.toHaveProperty('address_line_2');
    expect(address_line_2).toBe('x');
    const design = mapEvent(
      event('design', { design_id: 8, ...STAMPS, design_name: 'Wooden', file_name: 'f' }, 'u', { unchanged: ['file_location', 'design_name'] }),
    );
    expect(design.row.unchanged).toBe(',file_location,design_name,');
  });
});

describe('what mapEvent refuses, with the reason', () => {
  const salesOrder = CASES[8][1];
  it.each([
    ['created_at', '2024-05-01T09:15:02Z', /^created_at: not a timestamp: "2024-05-01T09:15:02Z"$/],
    ['created_at', 12, /^created_at: not a timestamp: 12$/],
    ['last_updated', '2024-05-01', /^last_updated: not a timestamp/],
    ['agreed_payment_date', 'next Tuesday', /^agreed_payment_date: not a YYYY-MM-DD date: "next Tuesday"$/],
    ['agreed_delivery_date', '2024-13-01', /^agreed_delivery_date: not a YYYY-MM-DD date/],
    ['agreed_delivery_date', '2024-02-30', /^agreed_delivery_date: not a YYYY-MM-DD date/], // no such day: it must not become 1 March
    ['agreed_delivery_date', '2023-02-29', /^agreed_delivery_date: not a YYYY-MM-DD date/],
    ['agreed_delivery_date', '0000-01-01', /^agreed_delivery_date: not a YYYY-MM-DD date/],
    ['agreed_delivery_date', '24-05-03', /^agreed_delivery_date: not a YYYY-MM-DD date/],
    ['agreed_delivery_date', 20240503, /^agreed_delivery_date: not a YYYY-MM-DD date: 20240503$/],
    // numeric(10,2) in the source takes NaN (and ±Infinity from Postgres 14); the warehouse's numeric(10,2) holds neither
    ['unit_price', 'NaN', /^unit_price: not a numeric\(10,2\): "NaN"$/],
    ['unit_price', 'Infinity', /^unit_price: not a numeric\(10,2\): "Infinity"$/],
    ['unit_price', '-Infinity', /^unit_price: not a numeric\(10,2\): "-Infinity"$/],
    ['unit_price', '100000000.00', /^unit_price: out of numeric\(10,2\) range: "100000000.00"$/], // a source retyped to a wider numeric
    ['unit_price', '-123456789', /^unit_price: out of numeric\(10,2\) range/],
    ['unit_price', '3.999', /^unit_price: not a numeric\(10,2\): "3.999"$/], // never rounded
    // a retyped source column: never truncated or wrapped into the warehouse's int
    ['units_sold', '12.5', /^units_sold: not a 32-bit integer: "12.5"$/],
    ['units_sold', 2 ** 31, /^units_sold: not a 32-bit integer: 2147483648$/],
    ['staff_id', 1.5, /^staff_id: not a 32-bit integer: 1.5$/], // named as in the source (the warehouse says sales_staff_id)
    // wal2json prints a numeric NaN or ±Infinity as null: no more a value than NaN itself
    ['unit_price', null, /^unit_price: null, but the source column is NOT NULL/],
    ['created_at', null, /^created_at: null, but the source column is NOT NULL/],
    ['agreed_delivery_date', null, /^agreed_delivery_date: null, but the source column is NOT NULL/],
  ])('%s = %j', (column, value, reason) => {
    expect(() => mapEvent(event('sales_order', { ...salesOrder, [column]: value }))).toThrow(MappingError);
    expect(() => mapEvent(event('sales_order', { ...salesOrder, [column]: value }))).toThrow(reason);
  });

  it('names the column and value at fault', () => {
    const err = (() => {
      try {
        mapEvent(event('payment', { ...CASES[10][1], payment_amount: 'NaN' }));
      } catch (e) {
        return e as MappingError;
      }
    })();
    expect([err?.column, err?.value]).toEqual(['payment_amount', 'NaN']);
  });

  it('takes a null where the source allows one, and the largest amounts numeric(10,2) holds', () => {
    const [, transaction] = CASES[7];
    expect(mapEvent(event('transaction', { ...transaction, sales_order_id: null, purchase_order_id: null })).row).toMatchObject({ sales_order_id: null });
    for (const amount of ['99999999.99', '-99999999.99', '0', '-0.01'])
      expect(mapEvent(event('payment', { ...CASES[10][1], payment_amount: amount })).row).toMatchObject({ payment_amount: amount });
  });

  it.each(['2024-02-29', '2000-02-29', '0001-01-01', '9999-12-31'])('accepts the day %s', (day) => {
    expect(mapEvent(event('payment', { ...CASES[10][1], payment_date: day })).row).toMatchObject({ payment_date: day });
  });

  it.each([
    ['XYZ', /^unknown ISO 4217 currency code "XYZ"$/],
    ['ABCD', /^currency: /], // Intl refuses it outright: still a MappingError naming the table
    ['', /^currency: /],
  ])('currency code %j', (code, reason) => {
    const change = event('currency', { currency_id: 5, currency_code: code, ...STAMPS });
    expect(() => mapEvent(change)).toThrow(MappingError);
    expect(() => mapEvent(change)).toThrow(reason);
  });
});

describe('mapEvents', () => {
  it('groups rows by load table in event order and sets aside what cannot be mapped, with the reason', () => {
    const good = [event('sales_order', CASES[8][1]), event('address', CASES[0][1]), event('sales_order', { ...CASES[8][1], sales_order_id: 12 }, 'u')];
    const bad = event('payment', { ...CASES[10][1], payment_date: 'soon' });
    const { rows, failures } = mapEvents([good[0], bad, good[1], good[2]]);
    expect(Object.keys(rows).sort()).toEqual(['dim_location', 'fact_sales_order']);
    expect(rows.fact_sales_order?.map((r) => [r.sales_order_id, r.source_op])).toEqual([
      [11, 'c'],
      [12, 'u'],
    ]);
    expect(failures).toEqual([{ event: bad, reason: 'payment_date: not a YYYY-MM-DD date: "soon"', column: 'payment_date', value: 'soon' }]);
  });

  it('lets an error that is not about the data through', () => {
    const broken = { ...event('sales_order', CASES[8][1]), table: 'no_such_table' } as unknown as ChangeEvent;
    expect(() => mapEvents([broken])).toThrow(TypeError);
  });
});
