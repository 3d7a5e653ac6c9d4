/**
 * Wal2JsonDecoder on wal2json format-version 2 text as wal2json 2.5 prints it (bare JSON
 * numbers, commit times in the server's zone): numbers kept digit for digit, commit times in
 * UTC, the key-change split, unchanged TOAST, our messages and nothing else. The same changes
 * on a real server, against pgoutput: wal2json-decoder.pg15.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Row } from '../formats/change-event.ts';
import { HEARTBEAT_PREFIX, MESSAGE_PREFIX } from '../formats/source-signals.ts';
import type { Decoded } from './decoding.ts';
import { SchemaWatch } from './schema-watch.ts';
import { Wal2JsonDecoder } from './wal2json-decoder.ts';
import { SALES_ORDER_1000, at, currencyKeyChange, currencyRow, salesOrderInsert } from '../test/decoded-events.ts';

const INT4 = 23,
  INT8 = 20,
  TEXT = 25,
  NUMERIC = 1700,
  TIMESTAMP = 1114,
  BOOL = 16;

/** One column as wal2json prints it; `raw` is the JSON literal exactly as it stands in the text. */
const col = (name: string, typeoid: number, raw: string) => `{"name":"${name}","typeoid":${typeoid},"value":${raw}}`;
const str = (s: string | null) => JSON.stringify(s);

const begin = (timestamp: string, xid = 771, lsn = '0/16B3748') =>
  `{"action":"B","xid":${xid},"timestamp":"${timestamp}","lsn":"${lsn}","nextlsn":"0/16B3778"}`;
const commit = (nextlsn: string) => `{"action":"C","xid":771,"timestamp":"2024-05-01 10:15:02.456789+01","lsn":"0/16B3800","nextlsn":"${nextlsn}"}`;
const change = (action: 'I' | 'U' | 'D', table: string, parts: { columns?: string[]; identity?: string[] }, schema = 'public') =>
  `{"action":"${action}","xid":771,"lsn":"0/16B3750","schema":"${schema}","table":"${table}"${
    parts.columns ? `,"columns":[${parts.columns.join(',')}]` : ''
  }${parts.identity ? `,"identity":[${parts.identity.join(',')}]` : ''}}`;
const message = (transactional: boolean, prefix: string, content: string) =>
  `{"action":"M","lsn":"0/16B3760","transactional":${transactional},"prefix":${str(prefix)},"content":${str(content)}}`;

function stream() {
  const decoder = new Wal2JsonDecoder();
  return (...messages: string[]) => messages.flatMap((m) => decoder.decode(m));
}
const changes = (decoded: Decoded[]): ChangeEvent[] => decoded.flatMap((d) => (d.type === 'change' ? [d.event] : []));

/** The transaction of test/decoded-events.ts's COMMIT, its commit time as a server in Asia/Kolkata prints it. */
const BEGIN = begin('2024-05-01 14:45:02.456789+05:30');

const TYPE_OIDS: Record<string, number> = {
  created_at: TIMESTAMP,
  last_updated: TIMESTAMP,
  unit_price: NUMERIC,
  currency_code: 1043,
  agreed_delivery_date: TEXT,
  agreed_payment_date: TEXT,
};
/** A row's columns as wal2json 2.5 prints them: numbers bare (numeric too), text quoted. */
const columns = (row: Row) =>
  Object.entries(row).map(([name, v]) => {
    const oid = TYPE_OIDS[name] ?? INT4;
    return col(name, oid, oid === INT4 || oid === NUMERIC ? String(v) : str(v as string | null));
  });

describe('Wal2JsonDecoder', () => {
  it('turns a transaction into the events pgoutput gives, at (commit LSN, position)', () => {
    const feed = stream();
    expect(feed(BEGIN)).toEqual([{ type: 'begin' }]);
    const decoded = feed(
      change('I', 'sales_order', { columns: columns(SALES_ORDER_1000) }),
      change('I', 'sales_order', { columns: columns({ ...SALES_ORDER_1000, sales_order_id: 1001, unit_price: '-0.01' }) }),
    );
    expect(changes(decoded)).toEqual([
      salesOrderInsert(0),
      expect.objectContaining({ key: { sales_order_id: 1001 }, after: expect.objectContaining({ unit_price: '-0.01' }), source: at(1) }),
    ]);
    expect(feed(commit('0/16B37D0'))).toEqual([{ type: 'commit', endLsn: '00000000/016B37D0' }]);
    feed(begin('2024-05-01 09:15:03+00', 772, '1/A0'));
    expect(changes(feed(change('I', 'sales_order', { columns: columns({ ...SALES_ORDER_1000, sales_order_id: 1002 }) })))[0].source).toEqual({
      lsn: '00000001/000000A0',
      pos: 0,
      xid: 772,
      commitTime: '2024-05-01T09:15:03.000000Z',
    });
  });

  it('keeps every bare number digit for digit, and leaves digits inside strings alone', () => {
    const feed = stream();
    feed(BEGIN);
    const awkward = 'O"Brien 12, 3.50 \\ Straße 東京 -7 1e5 🧵';
    const [event] = changes(
      feed(
        change('I', 'purchase_order', {
          columns: [
            col('purchase_order_id', INT4, '5'),
            col('item_code', TEXT, str(awkward)),
            col('item_quantity', INT4, '-12'),
            col('item_unit_price', NUMERIC, '0.10'),
            col('agreed_delivery_date', TEXT, str('C:\\')), // a string ending in a backslash
            col('added_by_a_migration', INT8, '9007199254740993'), // past 2^53: a float would make it ...992
          ],
        }),
      ),
    );
    expect(event.after).toEqual({
      purchase_order_id: 5,
      item_code: awkward,
      item_quantity: -12,
      item_unit_price: '0.10',
      agreed_delivery_date: 'C:\\',
      added_by_a_migration: '9007199254740993',
    });
  });

  it.each([
    ['2024-05-01 10:15:02.456789+01', '2024-05-01T09:15:02.456789Z'],
    ['2024-05-01 14:45:02.45+05:30', '2024-05-01T09:15:02.450000Z'], // trailing zeros of the fraction dropped
    ['2024-05-01 01:15:02-08', '2024-05-01T09:15:02.000000Z'], // no fraction on a whole second
    ['2024-05-01 03:00:00.000001+05:30', '2024-04-30T21:30:00.000001Z'], // back across midnight
    ['2024-12-31 23:59:59.999999-01', '2025-01-01T00:59:59.999999Z'], // forward across a year
    ['1896-01-01 00:00:00+00:01:15', '1895-12-31T23:58:45.000000Z'], // local mean time offsets have seconds
  ])('converts the commit time %s to UTC with microseconds', (printed, iso) => {
    const feed = stream();
    feed(begin(printed));
    const [event] = changes(feed(change('I', 'currency', { columns: [col('currency_id', INT4, '1'), col('currency_code', 1043, str('GBP'))] })));
    expect(event.source.commitTime).toBe(iso);
  });

  it('refuses a commit time it cannot read', () => {
    expect(() => stream()(begin('May 1st, 2024'))).toThrow(/unexpected wal2json timestamp/);
  });

  it('refuses a message that is not what wal2json format-version 2 sends, naming the field', () => {
    const decode = stream();
    expect(() => decode(BEGIN, change('I', 'currency', { columns: ['{"name":"currency_id","value":1}'] }))).toThrow(
      /^unexpected wal2json message: columns\[0\]\.typeoid: missing: /,
    );
    expect(() => decode('{"action":"X","xid":771}')).toThrow(/^unexpected wal2json message: action: expected "B" or "C" or /);
  });

  it('splits an update that changes the primary key into a delete and an insert, and leaves other updates updates', () => {
    const feed = stream();
    feed(BEGIN);
    const decoded = changes(
      feed(
        change('U', 'currency', { columns: columns(currencyRow(99)), identity: [col('currency_id', INT4, '3')] }),
        change('U', 'currency', { columns: columns(currencyRow(1)), identity: [col('currency_id', INT4, '1')] }), // wal2json sends the identity anyway
        change('D', 'currency', { identity: [col('currency_id', INT4, '2')] }),
      ),
    );
    expect(decoded).toEqual([
      ...currencyKeyChange(0),
      { v: 1, kind: 'change', op: 'u', table: 'currency', key: { currency_id: 1 }, before: null, after: currencyRow(1), source: at(2) },
      { v: 1, kind: 'change', op: 'd', table: 'currency', key: { currency_id: 2 }, before: { currency_id: 2 }, after: null, source: at(3) },
    ]);
  });

  it('lists the columns an update leaves out (unchanged TOAST) as unchanged, and keeps a real NULL', () => {
    const feed = stream();
    feed(BEGIN);
    const [update] = changes(
      feed(
        change('U', 'design', {
          columns: [
            col('design_id', INT4, '1'),
            col('created_at', TIMESTAMP, str('2024-05-01 09:00:00')),
            col('design_name', TEXT, str('Renamed')),
            col('file_name', TEXT, 'null'),
            col('last_updated', TIMESTAMP, str('2024-05-02 00:00:00')),
          ],
          identity: [col('design_id', INT4, '1')],
        }),
      ),
    );
    expect(update.after).toEqual({
      design_id: 1,
      created_at: '2024-05-01 09:00:00',
      design_name: 'Renamed',
      file_name: null,
      last_updated: '2024-05-02 00:00:00',
    });
    expect(update.unchanged).toEqual(['file_location']);
    expect(update.before).toBeNull();
  });

  it("carries a key change's unchanged TOASTed value from the old row when the identity holds it, else names the other key", () => {
    const feed = stream();
    feed(BEGIN);
    const row = (id: string) => [col('design_id', INT4, id), col('created_at', TIMESTAMP, str('2024-05-01 09:00:00')), col('design_name', TEXT, str('Moved'))];
    const rest = [col('file_name', TEXT, str('f')), col('last_updated', TIMESTAMP, str('2024-05-02 00:00:00'))];
    const [deleted, inserted, fullDeleted, fullInserted] = changes(
      feed(
        change('U', 'design', { columns: [...row('9'), ...rest], identity: [col('design_id', INT4, '1')] }),
        // REPLICA IDENTITY FULL: the old row holds the value
        change('U', 'design', { columns: [...row('8'), ...rest], identity: [...row('2'), col('file_location', TEXT, str('/big')), ...rest] }),
      ),
    );
    expect(deleted).toMatchObject({ op: 'd', key: { design_id: 1 }, movedTo: { design_id: 9 } });
    expect(inserted).toMatchObject({ op: 'c', key: { design_id: 9 }, unchanged: ['file_location'], movedFrom: { design_id: 1 } });
    expect(fullDeleted).not.toHaveProperty('movedTo');
    expect(fullInserted).toMatchObject({ op: 'c', key: { design_id: 8 }, after: { file_location: '/big', design_name: 'Moved' } });
    expect(fullInserted).not.toHaveProperty('unchanged');
    expect(fullInserted).not.toHaveProperty('movedFrom');
  });

  it('carries booleans as booleans', () => {
    const feed = stream();
    feed(BEGIN);
    const paid = (id: string, raw: string) => change('I', 'payment', { columns: [col('payment_id', INT4, id), col('paid', BOOL, raw)] });
    expect(changes(feed(paid('1', 'true'), paid('2', 'false'))).map((e) => e.after?.paid)).toEqual([true, false]);
  });

  it('passes on our transactional heartbeats and markers, and nothing else', () => {
    const feed = stream();
    expect(feed(message(false, HEARTBEAT_PREFIX, ''))).toEqual([]);
    feed(BEGIN);
    expect(feed(message(false, HEARTBEAT_PREFIX, ''))).toEqual([]);
    expect(feed(message(true, HEARTBEAT_PREFIX, ''))).toEqual([{ type: 'heartbeat', event: { v: 1, kind: 'heartbeat', source: at(0) } }]);
    expect(feed(message(true, `${MESSAGE_PREFIX}snapshot-low`, 'chunk-1 "quoted" 42'))).toEqual([
      { type: 'signal', kind: `${MESSAGE_PREFIX}snapshot-low`, content: 'chunk-1 "quoted" 42' },
    ]);
    expect(feed(message(true, 'someone-else', 'not ours'))).toEqual([]);
  });

  it('ignores tables it does not capture and other schemas, and their truncates', () => {
    const feed = stream();
    feed(BEGIN);
    expect(
      feed(
        change('I', '_prisma_migrations', { columns: [col('id', TEXT, str('x'))] }),
        change('I', 'design', { columns: [col('design_id', INT4, '1')] }, 'audit'),
        '{"action":"T","xid":771,"lsn":"0/16B3770","schema":"audit","table":"design"}',
      ),
    ).toEqual([]);
    const [event] = changes(feed(change('I', 'currency', { columns: [col('currency_id', INT4, '4')] })));
    expect(event.source.pos).toBe(0);
  });

  it("reports the columns its changes send, as pgoutput's relation messages do, each time they differ, so a dropped or retyped column is seen", () => {
    const feed = stream();
    feed(BEGIN);
    const design = (action: 'I' | 'U', id: string, cols: string[]) => change(action, 'design', { columns: [col('design_id', INT4, id), ...cols] });
    const stamps = [col('created_at', TIMESTAMP, str('2024-05-01 09:00:00')), col('last_updated', TIMESTAMP, str('2024-05-02 00:00:00'))];
    const named = (type: number) => [col('design_name', type, str('W')), col('file_location', TEXT, str('/')), col('file_name', TEXT, str('f'))];
    const schemaItems = (decoded: Decoded[]) => decoded.filter((d) => d.type === 'schema');
    const watch = new SchemaWatch(new Map()); // the first change's columns stand for those at start
    const issues = (decoded: Decoded[]) => schemaItems(decoded).flatMap((d) => (d.type === 'schema' ? watch.relation(d.table, d.columns) : []));

    const first = feed(design('I', '1', [...stamps, ...named(TEXT)]));
    expect(schemaItems(first)).toEqual([{ type: 'schema', table: 'design', columns: expect.arrayContaining([{ name: 'design_name', typeOid: TEXT }]) }]);
    expect(first[0].type).toBe('schema'); // before the change, as a relation message comes
    expect(issues(first)).toEqual([]);
    expect(schemaItems(feed(design('I', '2', [...stamps, ...named(TEXT)])))).toEqual([]); // the same columns: nothing new
    // an update leaving a TOASTed text value out: as it was, not dropped
    expect(issues(feed(design('U', '1', [...stamps, col('design_name', TEXT, str('W')), col('file_name', TEXT, str('f'))])))).toEqual([]);
    expect(issues(feed(design('I', '3', [...stamps, ...named(1043)])))).toEqual(['design.design_name changed type (oid 25 → 1043)']);
    // an update leaving out a column no value of which can be TOASTed: dropped
    expect(issues(feed(design('U', '3', [stamps[1], ...named(1043)])))).toEqual(['design.created_at was dropped']);
    expect(issues(feed(design('I', '4', [stamps[1], ...named(1043)])))).toEqual([]); // reported once
  });
});
