/**
 * How Terrific Totes writes to totesys: the seed (history shaped like the real data) and the
 * live simulator share one set of row generators, so both follow data-model.md §1.
 */
import type pg from 'pg';
import type { Row } from '../formats/change-event.ts';
import { Random, dateText, timestampText } from './random.ts';
import { TOTESYS_DDL } from './schema.ts';

type Queryable = Pick<pg.ClientBase, 'query'>;

const DAY = 86_400_000;
const HISTORY_START = Date.UTC(2022, 10, 3, 14, 20, 51, 563);
const HISTORY_END = Date.UTC(2024, 10, 1);

const CITIES = [
  ['Leeds', 'West Yorkshire', 'United Kingdom'],
  ['Manchester', null, 'United Kingdom'],
  ['Aliso Viejo', 'Avon', 'Turkey'],
  ['Lake Charles', null, 'San Marino'],
  ['East Bobbie', 'Bedfordshire', 'Austria'],
  ['Olsonside', 'Buckinghamshire', 'Congo'],
  ['Fort Shadburgh', null, 'Rwanda'],
  ['New Tyra', 'Cambridgeshire', 'Bermuda'],
  ['Suffolk', 'Berkshire', 'Iceland'],
] as const;
const FIRST = [
  'Jeremie',
  'Deron',
  'Jeanette',
  'Ana',
  'Magdalena',
  'Korey',
  'Raphael',
  'Oswaldo',
  'Brody',
  'Jazmyn',
  'Meda',
  'Imani',
  'Stan',
  'Rigoberto',
  'Tom',
  'Pierre',
  'Lucy',
  'Jett',
  'Irving',
  'Mariela',
];
const LAST = [
  'Franey',
  'Beier',
  'Erdman',
  'Glover',
  'Zieme',
  'Reynolds',
  'Rippin',
  'Bergstrom',
  'Langosh',
  'Kuhlman',
  'Cremin',
  'Walsh',
  'Lehner',
  'Ondricka',
  'Gutmann',
  'Sauer',
  'Keebler',
  'Fahey',
  'Boyer',
  'Greenholt',
];
const DEPARTMENTS = ['Sales', 'Purchasing', 'Production', 'Dispatch', 'Finance', 'Facilities', 'Communications', 'HR'];
const DESIGN_WORDS = [
  'Wooden',
  'Steel',
  'Granite',
  'Bronze',
  'Cotton',
  'Rubber',
  'Frozen',
  'Plastic',
  'Soft',
  'Fresh',
  'Concrete',
  'Metal',
  'Bespoke',
  'Tasty',
];
const PAYMENT_TYPES = ['SALES_RECEIPT', 'SALES_REFUND', 'PURCHASE_PAYMENT', 'PURCHASE_REFUND'];
const CURRENCIES = ['GBP', 'USD', 'EUR'];

export interface Sizes {
  address: number;
  counterparty: number;
  department: number;
  design: number;
  staff: number;
  salesOrders: number;
  purchaseOrders: number;
}
/** Late-2024 sizes of the real database. */
export const REAL_SIZES: Sizes = { address: 30, counterparty: 20, department: 8, design: 470, staff: 20, salesOrders: 11_600, purchaseOrders: 4_700 };

export function scaledSizes(scale: number): Sizes {
  const s = (n: number, min: number) => Math.max(min, Math.round(n * scale));
  return {
    address: 30,
    counterparty: 20,
    department: 8,
    staff: 20,
    design: s(470, 20),
    salesOrders: s(11_600, 10),
    purchaseOrders: s(4_700, 10),
  };
}

/** Upper bounds of the ids the generators may reference. */
export interface Universe {
  address: number;
  counterparty: number;
  department: number;
  design: number;
  staff: number;
}

function ts(rng: Random, ms: number): string {
  // about 0.2% of real values fall on a whole second: their text has no fraction
  return timestampText(rng.chance(0.002) ? ms - (ms % 1000) : ms);
}

function itemCode(rng: Random): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  let code = '';
  for (let i = 0; i < 7; i++) code += alphabet[rng.int(0, alphabet.length - 1)];
  return code;
}

export function addressRow(rng: Random, id: number, at: number): Row {
  const [city, district, country] = rng.pick(CITIES);
  const t = ts(rng, at);
  return {
    address_id: id,
    address_line_1: `${rng.int(1, 999)} ${rng.pick(LAST)} Road`,
    address_line_2: rng.chance(0.5) ? `${rng.pick(FIRST)} Cottage` : null,
    district,
    city,
    postal_code: `${rng.int(10000, 99999)}-${rng.int(1000, 9999)}`,
    country,
    phone: `${rng.int(1000, 9999)} ${rng.int(100000, 999999)}`,
    created_at: t,
    last_updated: t,
  };
}

export function designRow(rng: Random, id: number, at: number): Row {
  const word = rng.pick(DESIGN_WORDS);
  const t = ts(rng, at);
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const suffix = Array.from({ length: 4 }, () => letters[rng.int(0, 25)]).join('');
  return {
    design_id: id,
    created_at: t,
    design_name: word,
    file_location: `/${rng.pick(['usr', 'opt', 'srv', 'private'])}`,
    file_name: `${word.toLowerCase()}-${dateText(at).replaceAll('-', '')}-${suffix}.json`,
    last_updated: t,
  };
}

export interface OrderRows {
  order: Row;
  transaction: Row;
  payment: Row;
}

/** A new sales order written with its transaction and payment, all with one created_at. */
export function salesOrderRows(rng: Random, u: Universe, ids: [number, number, number], at: number): OrderRows {
  const t = ts(rng, at);
  const units = rng.int(1_000, 100_000);
  const price = rng.money(2, 4);
  const currency = rng.int(1, 3);
  const counterparty = rng.int(1, u.counterparty);
  const paymentDate = dateText(at + rng.int(0, 7) * DAY);
  const order: Row = {
    sales_order_id: ids[0],
    created_at: t,
    last_updated: t,
    design_id: rng.int(1, u.design),
    staff_id: rng.int(1, u.staff),
    counterparty_id: counterparty,
    units_sold: units,
    unit_price: price,
    currency_id: currency,
    agreed_delivery_date: dateText(at + rng.int(0, 7) * DAY),
    agreed_payment_date: paymentDate,
    agreed_delivery_location_id: rng.int(1, u.address),
  };
  return {
    order,
    transaction: { transaction_id: ids[1], transaction_type: 'SALE', sales_order_id: ids[0], purchase_order_id: null, created_at: t, last_updated: t },
    payment: paymentRow(rng, ids[2], ids[1], counterparty, multiplyMoney(units, price), currency, 1, paymentDate, t),
  };
}

export function purchaseOrderRows(rng: Random, u: Universe, ids: [number, number, number], at: number): OrderRows {
  const t = ts(rng, at);
  const quantity = rng.int(1, 1_000);
  const price = rng.money(3, 1_000);
  const currency = rng.int(1, 3);
  const counterparty = rng.int(1, u.counterparty);
  const paymentDate = dateText(at + rng.int(0, 7) * DAY);
  const order: Row = {
    purchase_order_id: ids[0],
    created_at: t,
    last_updated: t,
    staff_id: rng.int(1, u.staff),
    counterparty_id: counterparty,
    item_code: itemCode(rng),
    item_quantity: quantity,
    item_unit_price: price,
    currency_id: currency,
    agreed_delivery_date: dateText(at + rng.int(0, 7) * DAY),
    agreed_payment_date: paymentDate,
    agreed_delivery_location_id: rng.int(1, u.address),
  };
  return {
    order,
    transaction: { transaction_id: ids[1], transaction_type: 'PURCHASE', sales_order_id: null, purchase_order_id: ids[0], created_at: t, last_updated: t },
    payment: paymentRow(rng, ids[2], ids[1], counterparty, multiplyMoney(quantity, price), currency, 3, paymentDate, t),
  };
}

function paymentRow(
  rng: Random,
  id: number,
  transactionId: number,
  counterparty: number,
  amount: string,
  currency: number,
  type: number,
  paymentDate: string,
  t: string,
): Row {
  return {
    payment_id: id,
    created_at: t,
    last_updated: t,
    transaction_id: transactionId,
    counterparty_id: counterparty,
    payment_amount: amount,
    currency_id: currency,
    payment_type_id: type,
    paid: false,
    payment_date: paymentDate,
    company_ac_number: rng.int(10_000_000, 99_999_999),
    counterparty_ac_number: rng.int(10_000_000, 99_999_999),
  };
}

/** Exact quantity x price on decimal text. */
export function multiplyMoney(quantity: number, price: string): string {
  const cents = BigInt(quantity) * BigInt(price.replace('.', ''));
  const s = cents.toString().padStart(3, '0');
  return `${s.slice(0, -2)}.${s.slice(-2)}`;
}

/** Multi-row INSERT with parameters, chunked under Postgres's 65,535-parameter limit. */
export async function insertRows(db: Queryable, table: string, rows: Row[]): Promise<void> {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]);
  const perChunk = Math.floor(60_000 / columns.length);
  for (let start = 0; start < rows.length; start += perChunk) {
    const chunk = rows.slice(start, start + perChunk);
    const params: unknown[] = [];
    const tuples = chunk.map(
      (row) =>
        `(${columns
          .map((c) => {
            params.push(row[c]);
            return `$${params.length}`;
          })
          .join(',')})`,
    );
    await db.query(`INSERT INTO "${table}" (${columns.map((c) => `"${c}"`).join(',')}) VALUES ${tuples.join(',')}`, params);
  }
}

/** The totesys schema in an empty database, seeded. */
export async function createTotesys(db: Queryable, opts: { seed: number; sizes: Sizes }): Promise<void> {
  await db.query(TOTESYS_DDL);
  await seedTotesys(db, opts);
}

/** Seed the history: dimensions, then orders spread over two years, oldest first. */
export async function seedTotesys(db: Queryable, opts: { seed: number; sizes: Sizes }): Promise<void> {
  const rng = new Random(opts.seed);
  const n = opts.sizes;
  const at = (i: number, total: number) => HISTORY_START + Math.floor(((HISTORY_END - HISTORY_START) * i) / Math.max(total, 1)) + rng.int(0, 999);
  const t0 = () => ts(rng, HISTORY_START + rng.int(0, 999));

  await insertRows(
    db,
    'address',
    range(n.address).map((id) => addressRow(rng, id, HISTORY_START)),
  );
  await insertRows(
    db,
    'currency',
    CURRENCIES.map((code, i) => ({ currency_id: i + 1, currency_code: code, created_at: t0(), last_updated: t0() })),
  );
  await insertRows(
    db,
    'department',
    range(n.department).map((id) => {
      const t = t0();
      return {
        department_id: id,
        department_name: DEPARTMENTS[(id - 1) % DEPARTMENTS.length],
        location: rng.chance(0.1) ? 'Leds' : rng.pick(['Manchester', 'Leeds']),
        manager: `${rng.pick(FIRST)} ${rng.pick(LAST)}`,
        created_at: t,
        last_updated: t,
      };
    }),
  );
  await insertRows(
    db,
    'staff',
    range(n.staff).map((id) => {
      const first = FIRST[(id - 1) % FIRST.length],
        last = rng.pick(LAST);
      const t = t0();
      return {
        staff_id: id,
        first_name: first,
        last_name: last,
        department_id: rng.int(1, n.department),
        email_address: `${first.toLowerCase()}.${last.toLowerCase()}@terrifictotes.com`,
        created_at: t,
        last_updated: t,
      };
    }),
  );
  await insertRows(
    db,
    'counterparty',
    range(n.counterparty).map((id) => {
      const t = t0();
      return {
        counterparty_id: id,
        counterparty_legal_name: `${rng.pick(LAST)}, ${rng.pick(LAST)} and ${rng.pick(LAST)}`,
        legal_address_id: rng.int(1, n.address),
        commercial_contact: rng.chance(0.9) ? `${rng.pick(FIRST)} ${rng.pick(LAST)}` : null,
        delivery_contact: `${rng.pick(FIRST)} ${rng.pick(LAST)}`,
        created_at: t,
        last_updated: t,
      };
    }),
  );
  await insertRows(
    db,
    'payment_type',
    PAYMENT_TYPES.map((name, i) => ({ payment_type_id: i + 1, payment_type_name: name, created_at: t0(), last_updated: t0() })),
  );
  await insertRows(
    db,
    'design',
    range(n.design).map((id) => designRow(rng, id, at(id, n.design))),
  );

  const u: Universe = n;
  const orders = { sales_order: [] as Row[], purchase_order: [] as Row[], transaction: [] as Row[], payment: [] as Row[] };
  const total = n.salesOrders + n.purchaseOrders;
  let sales = 0,
    purchases = 0;
  for (let i = 1; i <= total; i++) {
    const isSale = purchases >= n.purchaseOrders || (sales < n.salesOrders && rng.chance(n.salesOrders / total));
    const rows = isSale ? salesOrderRows(rng, u, [++sales, i, i], at(i, total)) : purchaseOrderRows(rng, u, [++purchases, i, i], at(i, total));
    // history: payments whose date has passed have been paid
    if (String(rows.payment.payment_date) < '2024-10-25') rows.payment.paid = true;
    (isSale ? orders.sales_order : orders.purchase_order).push(rows.order);
    orders.transaction.push(rows.transaction);
    orders.payment.push(rows.payment);
  }
  for (const [table, rows] of Object.entries(orders)) await insertRows(db, table, rows);
  for (const table of [
    'address',
    'counterparty',
    'currency',
    'department',
    'design',
    'staff',
    'sales_order',
    'purchase_order',
    'payment_type',
    'transaction',
    'payment',
  ]) {
    await db.query(`SELECT setval(pg_get_serial_sequence('"${table}"', '${table}_id'), coalesce(max(${table}_id), 0) + 1, false) FROM "${table}"`);
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}
