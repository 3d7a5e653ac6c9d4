/**
 * The binary COPY against Postgres's own text input: the same rows, COPYed both ways into the
 * same columns, read back equal, at the edges of each type; a value in a form it does not read
 * fails the COPY as NotBinaryError and copies nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../test/harness.ts';
import { type BinaryType, copyBinaryRows, NotBinaryError } from './pg-binary-copy.ts';
import { type CopyValue, copyRows } from './pg-copy.ts';
import pg from './pg.ts';

const COLUMNS: [string, BinaryType, string][] = [
  ['i', 'int4', 'int'],
  ['t', 'text', 'varchar'],
  ['c', 'text', 'char(1)'],
  ['n', 'numeric', 'numeric(10,2)'],
  ['d', 'date', 'date'],
  ['tm', 'time', 'time(3)'],
  ['ts', 'timestamp', 'timestamp(6)'],
  ['l', 'pg_lsn', 'pg_lsn'],
  ['b', 'bool', 'boolean'],
];

const TYPES = COLUMNS.map(([name, type]): [string, BinaryType] => [name, type]);
const NAMES = COLUMNS.map(([name]) => name);

const ROWS: Record<string, CopyValue>[] = [
  { i: 0, t: '', c: 'c', n: '0.00', d: '2000-01-01', tm: '00:00:00', ts: '2000-01-01 00:00:00', l: '0/0', b: false },
  {
    i: 2147483647,
    t: 'tab\there, line\nthere, back\\slash',
    c: 'u',
    n: '12345678.99',
    d: '1999-12-31',
    tm: '23:59:59.999',
    ts: '1999-12-31 23:59:59.999999',
    l: 'FFFFFFFF/FFFFFFFF',
    b: true,
  },
  {
    i: -2147483648,
    t: 'Ünïcødé 👜 totes',
    c: 'd',
    n: '-12345678.99',
    d: '2024-02-29',
    tm: '12:34:56.1',
    ts: '2024-05-01 09:15:02.123456',
    l: '16/B374D848',
    b: true,
  },
  { i: 7, t: 'x', c: 'r', n: '0.01', d: '0001-01-01', tm: '24:00:00', ts: '1970-01-01 00:00:00.5', l: '00000016/b374d848', b: false },
  { i: 10000, t: 'y', c: 'r', n: '10000', d: '9999-12-31', tm: '07:08:09.012', ts: '2038-01-19 03:14:08', l: '1/0', b: false },
  { i: 1, t: 'z', c: 'c', n: '-0.5', d: '1900-03-01', tm: '00:00:00.001', ts: '1901-12-13 20:45:51.000001', l: '0/FFFFFFFF', b: true },
  { i: 2, t: 'w', c: 'c', n: 100.25 as never, d: '2023-12-31', tm: '13:00:00.999999', ts: '2024-02-29 23:59:59', l: 'A/B', b: true },
  { i: null, t: null, c: null, n: null, d: null, tm: null, ts: null, l: null, b: null },
];

describe('binary COPY', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let client: pg.Client;
  beforeAll(async () => {
    db = await createDatabase('binary_copy');
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    for (const table of ['by_text', 'by_binary']) await client.query(`CREATE TABLE ${table} (${COLUMNS.map(([n, , sql]) => `${n} ${sql}`).join(', ')})`);
  });
  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  const read = async (table: string) =>
    (await client.query(`SELECT ${COLUMNS.map(([n]) => `${n}::text`).join(', ')} FROM ${table} ORDER BY i NULLS LAST`)).rows;

  it('copies what the text COPY copies, at the edges of each type', async () => {
    expect(await copyRows(client, 'by_text', NAMES, ROWS)).toBe(ROWS.length);
    expect(await copyBinaryRows(client, 'by_binary', TYPES, ROWS)).toBe(ROWS.length);
    const byText = await read('by_text');
    expect(byText[0]).toMatchObject({ n: '-12345678.99', tm: '12:34:56.1', ts: '2024-05-01 09:15:02.123456' });
    expect(await read('by_binary')).toEqual(byText);
  });

  it('copies many rows across chunks, converted as asked', async () => {
    const many = Array.from({ length: 20_000 }, (_, k) => ({ ...ROWS[2], i: k, t: `row ${k} ${'x'.repeat(k % 50)}` }));
    await client.query('TRUNCATE by_text, by_binary');
    const convert = { c: (_: CopyValue, row: Record<string, CopyValue>) => ((row.i as number) % 2 ? 'u' : 'c') };
    await copyRows(client, 'by_text', NAMES, many, convert);
    expect(await copyBinaryRows(client, 'by_binary', TYPES, many, convert)).toBe(many.length);
    expect(await read('by_binary')).toEqual(await read('by_text'));
  });

  it.each([
    ['n', '1e5'],
    ['n', '12.'],
    ['n', 'NaN'],
    ['d', 'infinity'],
    ['d', '2023-02-30'],
    ['tm', '12:34:56.1234567'],
    ['ts', '2024-05-01T09:15:02Z'],
    ['l', '0/G'],
    ['i', 2 ** 31],
    ['b', 't'],
  ])('fails a COPY with %s = %j as NotBinaryError, copying nothing', async (column, value) => {
    await client.query('TRUNCATE by_binary');
    await client.query('BEGIN');
    await client.query('SAVEPOINT before');
    const rows = [ROWS[0], { ...ROWS[1], [column]: value }];
    const copying = copyBinaryRows(client, 'by_binary', TYPES, rows);
    await expect(copying).rejects.toBeInstanceOf(NotBinaryError);
    await expect(copying).rejects.toThrow(`${column} = ${JSON.stringify(value)}`);
    await client.query('ROLLBACK TO SAVEPOINT before');
    await client.query('COMMIT');
    expect(await read('by_binary')).toEqual([]);
  });
});
