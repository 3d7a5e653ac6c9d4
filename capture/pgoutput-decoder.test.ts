/**
 * PgoutputDecoder on hand-built pgoutput protocol messages (protocol-logicalrep-message-formats),
 * parsed by pg-logical-replication's own parser as in the stream, then decoded: values exact,
 * positions, the key-change split, unchanged TOAST, our logical messages and nothing else.
 */
import { PgoutputPlugin } from 'pg-logical-replication';
import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Row } from '../formats/change-event.ts';
import { HEARTBEAT_PREFIX, MESSAGE_PREFIX } from '../formats/source-signals.ts';
import '../lib/pg.ts'; // the capture service's type parsers: timestamps stay text
import { SALES_ORDER_1000, at, currencyKeyChange, currencyRow, salesOrderInsert } from '../test/decoded-events.ts';
import { PgoutputDecoder } from './pgoutput-decoder.ts';

const UNCHANGED = Symbol('unchanged TOAST datum');
type Cell = string | null | typeof UNCHANGED;

const tag = (c: string) => Buffer.from(c, 'ascii');
const u8 = (n: number) => Buffer.from([n]);
const int = (bytes: 2 | 4, n: number) => {
  const b = Buffer.alloc(bytes);
  if (bytes === 2) b.writeInt16BE(n);
  else b.writeInt32BE(n);
  return b;
};
const cstring = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), u8(0)]);
const lsn = (text: string) => {
  const [hi, lo] = text.split('/');
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Number.parseInt(hi, 16));
  b.writeUInt32BE(Number.parseInt(lo, 16), 4);
  return b;
};
/** A pgoutput timestamp: microseconds since 2000-01-01. */
const pgTime = (iso: string, extraMicros = 0) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(Date.parse(iso)) * 1000n + BigInt(extraMicros) - 946_684_800_000_000n);
  return b;
};
const tuple = (cells: Cell[]) =>
  Buffer.concat([
    int(2, cells.length),
    ...cells.map((c) => (c === null ? tag('n') : c === UNCHANGED ? tag('u') : Buffer.concat([tag('t'), int(4, Buffer.byteLength(c)), Buffer.from(c, 'utf8')]))),
  ]);

const INT4 = 23,
  TEXT = 25,
  NUMERIC = 1700,
  TIMESTAMP = 1114,
  BOOL = 16,
  PAYMENT_TYPE_NAME = 16_400; // an enum: its own oid, sent as its label

const wire = {
  begin: (finalLsn: string, commitIso: string, extraMicros: number, xid: number) =>
    Buffer.concat([tag('B'), lsn(finalLsn), pgTime(commitIso, extraMicros), int(4, xid)]),
  commit: (commitLsn: string, endLsn: string) => Buffer.concat([tag('C'), u8(0), lsn(commitLsn), lsn(endLsn), pgTime('2024-05-01T09:15:02Z')]),
  relation: (oid: number, schema: string, name: string, columns: [string, number][]) =>
    Buffer.concat([
      tag('R'),
      int(4, oid),
      cstring(schema),
      cstring(name),
      tag('d'),
      int(2, columns.length),
      ...columns.map(([column, typeOid], i) => Buffer.concat([u8(i === 0 ? 1 : 0), cstring(column), int(4, typeOid), int(4, -1)])),
    ]),
  insert: (oid: number, cells: Cell[]) => Buffer.concat([tag('I'), int(4, oid), tag('N'), tuple(cells)]),
  update: (oid: number, cells: Cell[], oldKey?: Cell[]) =>
    Buffer.concat([tag('U'), int(4, oid), ...(oldKey ? [tag('K'), tuple(oldKey)] : []), tag('N'), tuple(cells)]),
  delete: (oid: number, oldKey: Cell[]) => Buffer.concat([tag('D'), int(4, oid), tag('K'), tuple(oldKey)]),
  message: (transactional: boolean, prefix: string, content: string) =>
    Buffer.concat([tag('M'), u8(transactional ? 1 : 0), lsn('0/16B3760'), cstring(prefix), int(4, Buffer.byteLength(content)), Buffer.from(content)]),
  truncate: (oid: number) => Buffer.concat([tag('T'), int(4, 1), u8(0), int(4, oid)]),
};

const SALES_ORDER: [string, number][] = [
  ['sales_order_id', INT4],
  ['created_at', TIMESTAMP],
  ['last_updated', TIMESTAMP],
  ['design_id', INT4],
  ['staff_id', INT4],
  ['counterparty_id', INT4],
  ['units_sold', INT4],
  ['unit_price', NUMERIC],
  ['currency_id', INT4],
  ['agreed_delivery_date', TEXT],
  ['agreed_payment_date', TEXT],
  ['agreed_delivery_location_id', INT4],
];
const DESIGN: [string, number][] = [
  ['design_id', INT4],
  ['created_at', TIMESTAMP],
  ['design_name', TEXT],
  ['file_location', TEXT],
  ['file_name', TEXT],
  ['last_updated', TIMESTAMP],
];
const CURRENCY: [string, number][] = [
  ['currency_id', INT4],
  ['currency_code', 1043],
  ['created_at', TIMESTAMP],
  ['last_updated', TIMESTAMP],
];
const PAYMENT_TYPE: [string, number][] = [
  ['payment_type_id', INT4],
  ['payment_type_name', PAYMENT_TYPE_NAME],
  ['created_at', TIMESTAMP],
  ['last_updated', TIMESTAMP],
];
const OID = { sales_order: 16_500, design: 16_501, currency: 16_502, payment_type: 16_503, prisma: 16_504, otherSchema: 16_505, signal: 16_506 };

/** A decoder fed through the library's parser, as the capture service feeds it. */
function stream() {
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: ['totes_cdc'], messages: true });
  const decoder = new PgoutputDecoder();
  return (...messages: Buffer[]) => messages.flatMap((m) => decoder.decode(plugin.parse(m)));
}

/** A row's cells as pgoutput sends them, in column order: every value as text. */
const cells = (row: Row): Cell[] => Object.values(row).map((v) => (v === null ? null : String(v)));
const changes = (decoded: ReturnType<ReturnType<typeof stream>>) => decoded.flatMap((d) => (d.type === 'change' ? [d.event] : []));
/** The transaction of test/decoded-events.ts's COMMIT. */
const BEGIN = wire.begin('0/16B3748', '2024-05-01T09:15:02.456Z', 789, 771);

describe('PgoutputDecoder', () => {
  it('turns a transaction into events at (commit LSN, position) with every value exact', () => {
    const feed = stream();
    expect(feed(wire.relation(OID.sales_order, 'public', 'sales_order', SALES_ORDER))).toEqual([
      { type: 'schema', table: 'sales_order', columns: SALES_ORDER.map(([name, typeOid]) => ({ name, typeOid })) },
    ]);
    expect(feed(BEGIN)).toEqual([{ type: 'begin' }]);
    const decoded = feed(
      wire.insert(OID.sales_order, cells(SALES_ORDER_1000)),
      wire.insert(OID.sales_order, cells({ ...SALES_ORDER_1000, sales_order_id: 1001, unit_price: '-0.01' })),
    );
    expect(changes(decoded)).toEqual([
      salesOrderInsert(0),
      expect.objectContaining({ key: { sales_order_id: 1001 }, after: expect.objectContaining({ unit_price: '-0.01' }), source: at(1) }),
    ]);
    expect(feed(wire.commit('0/16B3748', '0/16B37A0'))).toEqual([{ type: 'commit', endLsn: '00000000/016B37A0' }]);

    // the next transaction starts again at position 0, at its own commit LSN and time
    feed(wire.begin('1/A0', '2024-12-31T23:59:59Z', 0, 772));
    const [next] = changes(feed(wire.insert(OID.sales_order, cells({ ...SALES_ORDER_1000, sales_order_id: 1002 }))));
    expect(next.source).toEqual({ lsn: '00000001/000000A0', pos: 0, xid: 772, commitTime: '2024-12-31T23:59:59.000000Z' });
  });

  it('reports a table schema once, and again only when its columns change', () => {
    const feed = stream();
    const rel = wire.relation(OID.design, 'public', 'design', DESIGN);
    expect(feed(rel).map((d) => d.type)).toEqual(['schema']);
    expect(feed(rel)).toEqual([]);
    const retyped = wire.relation(OID.design, 'public', 'design', [...DESIGN.slice(0, 2), ['design_name', 1043], ...DESIGN.slice(3)]);
    expect(feed(retyped)).toEqual([{ type: 'schema', table: 'design', columns: expect.arrayContaining([{ name: 'design_name', typeOid: 1043 }]) }]);
  });

  it('splits an update that changes the primary key into a delete of the old key and an insert of the new one', () => {
    const feed = stream();
    feed(wire.relation(OID.currency, 'public', 'currency', CURRENCY), BEGIN);
    expect(changes(feed(wire.update(OID.currency, cells(currencyRow(99)), ['3', null, null, null])))).toEqual(currencyKeyChange(0));
  });

  it('keeps an update of the same key an update, and a delete carries the old key', () => {
    const feed = stream();
    feed(wire.relation(OID.payment_type, 'public', 'payment_type', PAYMENT_TYPE), BEGIN);
    const [update, remove] = changes(
      feed(
        wire.update(OID.payment_type, ['1', 'SALES_REFUND', '2024-05-01 09:00:00', '2024-05-01 09:15:02.123']),
        wire.delete(OID.payment_type, ['2', null, null, null]),
      ),
    );
    expect(update).toMatchObject({ op: 'u', key: { payment_type_id: 1 }, before: null, after: { payment_type_name: 'SALES_REFUND' } });
    expect(update).not.toHaveProperty('unchanged');
    expect(remove).toMatchObject({ op: 'd', key: { payment_type_id: 2 }, before: { payment_type_id: 2 }, after: null, source: { pos: 1 } });
  });

  it('lists an unchanged TOASTed value as unchanged, never as NULL, and keeps a real NULL', () => {
    const feed = stream();
    feed(wire.relation(OID.design, 'public', 'design', DESIGN), BEGIN);
    const [event] = changes(feed(wire.update(OID.design, ['1', '2024-05-01 09:00:00', 'Renamed', UNCHANGED, null, '2024-05-02 00:00:00'])));
    expect(event.after).toEqual({
      design_id: 1,
      created_at: '2024-05-01 09:00:00',
      design_name: 'Renamed',
      file_name: null,
      last_updated: '2024-05-02 00:00:00',
    });
    expect(event.unchanged).toEqual(['file_location']);
  });

  it('names the other key on both halves of a key change that leaves a TOASTed value unchanged', () => {
    const feed = stream();
    feed(wire.relation(OID.design, 'public', 'design', DESIGN), BEGIN);
    // the default replica identity: the old tuple is the key alone, the value is sent with neither half
    const [deleted, inserted] = changes(
      feed(wire.update(OID.design, ['9', '2024-05-01 09:00:00', 'Moved', UNCHANGED, 'f', '2024-05-02 00:00:00'], ['1', null, null, null, null, null])),
    );
    expect(deleted).toMatchObject({ op: 'd', key: { design_id: 1 }, before: { design_id: 1 }, movedTo: { design_id: 9 } });
    expect(inserted).toMatchObject({ op: 'c', key: { design_id: 9 }, unchanged: ['file_location'], movedFrom: { design_id: 1 } });
    expect(inserted.after).not.toHaveProperty('file_location');
  });

  it('passes on our heartbeats and markers inside a transaction, and nothing that is not ours', () => {
    const feed = stream();
    expect(feed(wire.message(false, HEARTBEAT_PREFIX, ''))).toEqual([]); // outside a transaction: no position to give it
    feed(BEGIN);
    expect(feed(wire.message(true, HEARTBEAT_PREFIX, ''))).toEqual([{ type: 'heartbeat', event: { v: 1, kind: 'heartbeat', source: at(0) } }]);
    expect(feed(wire.message(true, `${MESSAGE_PREFIX}snapshot-high`, 'chunk 7 ✓'))).toEqual([
      { type: 'signal', kind: `${MESSAGE_PREFIX}snapshot-high`, content: 'chunk 7 ✓' },
    ]);
    expect(feed(wire.message(true, 'someone-else', 'not ours'))).toEqual([]);
  });

  it('on Postgres 13 reads our signals from the signal table rows, never as changes', () => {
    const feed = stream();
    const SIGNAL: [string, number][] = [
      ['writer', TEXT],
      ['kind', TEXT],
      ['content', TEXT],
      ['written_at', TEXT],
    ];
    expect(feed(wire.relation(OID.signal, 'totes_cdc', 'signal', SIGNAL), BEGIN)).toEqual([{ type: 'begin' }]);
    expect(feed(wire.insert(OID.signal, ['totes_cdc', HEARTBEAT_PREFIX, '', '2024-05-01 09:15:02+00']))).toEqual([
      { type: 'heartbeat', event: { v: 1, kind: 'heartbeat', source: at(0) } },
    ]);
    // one row per writer: the next signal is an update of it
    expect(feed(wire.update(OID.signal, ['totes_cdc', `${MESSAGE_PREFIX}snapshot-low`, 'chunk 3', '2024-05-01 09:15:02+00']))).toEqual([
      { type: 'signal', kind: `${MESSAGE_PREFIX}snapshot-low`, content: 'chunk 3' },
    ]);
    expect(
      feed(wire.update(OID.signal, ['verify', 'someone-else', 'not ours', '2024-05-01 09:15:02+00']), wire.delete(OID.signal, ['totes_cdc', null, null, null])),
    ).toEqual([]);
  });

  it('ignores tables it does not capture, other schemas and truncates', () => {
    const feed = stream();
    const prisma = wire.relation(OID.prisma, 'public', '_prisma_migrations', [
      ['id', TEXT],
      ['checksum', TEXT],
    ]);
    const elsewhere = wire.relation(OID.otherSchema, 'audit', 'design', DESIGN);
    expect(feed(prisma, elsewhere, BEGIN)).toEqual([{ type: 'begin' }]);
    expect(feed(wire.insert(OID.prisma, ['x', 'y']), wire.insert(OID.otherSchema, ['1', null, 'n', 'l', 'f', null]), wire.truncate(OID.prisma))).toEqual([]);
    // and a captured change after them still gets position 0: nothing ignored used one up
    feed(wire.relation(OID.payment_type, 'public', 'payment_type', PAYMENT_TYPE));
    const [event] = changes(feed(wire.insert(OID.payment_type, ['5', 'PURCHASE_REFUND', '2024-05-01 09:00:00', '2024-05-01 09:00:00']))) as ChangeEvent[];
    expect(event.source.pos).toBe(0);
  });

  it('carries booleans as booleans', () => {
    const feed = stream();
    const columns: [string, number][] = [
      ['payment_id', INT4],
      ['paid', BOOL],
    ];
    feed(wire.relation(16_600, 'public', 'payment', columns), BEGIN);
    expect(changes(feed(wire.insert(16_600, ['1', 't']), wire.insert(16_600, ['2', 'f']))).map((e) => e.after?.paid)).toEqual([true, false]);
  });
});
