/** The change-event contract: what decodeEvent accepts, everything it refuses and why, and LSN order. */
import { describe, expect, it } from 'vitest';
import {
  type ChangeEvent,
  type HeartbeatEvent,
  InvalidEventError,
  type PointerEvent,
  type SnapshotRangeEvent,
  bigIntToLsn,
  compareEventIds,
  compareLsn,
  decodeEvent,
  decodeRecord,
  encodeEvent,
  encodeRecord,
  lsnToBigInt,
  partitionKeyOf,
  recordLines,
} from './change-event.ts';

const source = { lsn: '00000016/B374D848', pos: 2, xid: 771, commitTime: '2024-05-01T09:15:02.456789Z' };
const change: ChangeEvent = {
  v: 1,
  kind: 'change',
  op: 'u',
  table: 'payment',
  key: { payment_id: 42 },
  before: null,
  after: { payment_id: 42, payment_amount: '1234.50', created_at: '2024-05-01 09:15:02.123', paid: true },
  unchanged: ['note'],
  source,
};
const heartbeat: HeartbeatEvent = { v: 1, kind: 'heartbeat', source: { ...source, pos: 0 } };
const pointer: PointerEvent = {
  v: 1,
  kind: 'pointer',
  table: 'design',
  key: { design_id: 2 },
  object: { bucket: 'ingestion', key: 'oversize/design/00000016B374D848-2.json', bytes: 1_500_000 },
  source,
};
const range: SnapshotRangeEvent = {
  v: 1,
  kind: 'snapshot-range',
  table: 'payment',
  after: null,
  through: 50,
  present: [
    [1, 4],
    [7, 7],
  ],
  source,
};

/** The change with some fields replaced (undefined removes one), as JSON. */
const withFields = (base: object, fields: Record<string, unknown>) => JSON.stringify({ ...base, ...fields });

describe('decodeEvent', () => {
  it.each([
    ['a change', change],
    ['a heartbeat', heartbeat],
    [
      'a heartbeat naming its shard and the open ones',
      { ...heartbeat, shard: 'shardId-000000000002', openShards: ['shardId-000000000002', 'shardId-000000000003'] },
    ],
    ['a pointer', pointer],
    ['a snapshot range', range],
    ['a truncate', { v: 1, kind: 'truncate', table: 'payment', source }],
    ['a delete', { ...change, op: 'd', before: { payment_id: 42 }, after: null }],
    ['a snapshot read', { ...change, op: 'r', source: { ...source, xid: null } }],
    ['an insert', { ...change, op: 'c' }],
  ])('takes back %s exactly as it was encoded, one line of NDJSON', (_, event) => {
    const line = encodeEvent(event as ChangeEvent);
    expect(line.endsWith('}\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    expect(decodeEvent(line)).toEqual(event);
  });

  it('keeps numeric strings and timestamps as the text they were', () => {
    const back = decodeEvent(encodeEvent(change)) as ChangeEvent;
    expect(back.after).toMatchObject({ payment_amount: '1234.50', created_at: '2024-05-01 09:15:02.123' });
  });

  it.each([
    ['not JSON', '{"v":1,', /^not JSON: /],
    ['an array', '[1]', /^expected object, got an array$/],
    ['null', 'null', /^expected object, got null$/],
    ['a number', '42', /^expected object, got 42$/],
    ['another envelope version', withFields(change, { v: 2 }), /^v: expected 1, got 2$/],
    ['no envelope version', withFields(change, { v: undefined }), /^v: missing$/],
    ['no source', withFields(change, { source: undefined }), /^source: missing$/],
    ['a source that is not an object', withFields(change, { source: 'x' }), /^source: expected object, got "x"$/],
    ['an LSN without a slash', withFields(change, { source: { ...source, lsn: '16B374D848' } }), /^source.lsn: must be an LSN, hex "X\/Y", got "16B374D848"$/],
    ['an LSN with a non-hex digit', withFields(change, { source: { ...source, lsn: '0/16G' } }), /^source.lsn: must be an LSN/],
    ['an LSN half over 32 bits', withFields(change, { source: { ...source, lsn: '0/123456789' } }), /^source.lsn: must be an LSN/],
    ['a numeric LSN', withFields(change, { source: { ...source, lsn: 42 } }), /^source.lsn: expected string, got 42$/],
    ['a negative position', withFields(change, { source: { ...source, pos: -1 } }), /^source.pos: must be an integer from 0, got -1$/],
    ['a fractional position', withFields(change, { source: { ...source, pos: 1.5 } }), /^source.pos: must be an integer from 0, got 1.5$/],
    ['a position as text', withFields(change, { source: { ...source, pos: '2' } }), /^source.pos: expected number, got "2"$/],
    ['no commit time', withFields(change, { source: { ...source, commitTime: undefined } }), /^source.commitTime: missing$/],
    [
      'a commit time that is no time',
      withFields(change, { source: { ...source, commitTime: 'yesterday' } }),
      /^source.commitTime: must be a time, got "yesterday"$/,
    ],
    [
      'an unknown kind',
      withFields(change, { kind: 'rename' }),
      /^kind: expected "change" or "heartbeat" or "pointer" or "truncate" or "snapshot-range", got "rename"$/,
    ],
    ['no kind', withFields(change, { kind: undefined }), /^kind: missing$/],
    ['a heartbeat naming its shard but not the open ones', withFields(heartbeat, { shard: 's1' }), /^openShards: must be given with shard, got nothing$/],
    [
      'a heartbeat naming the open shards but not its own',
      withFields(heartbeat, { openShards: ['s1'] }),
      /^shard: must be given with openShards, got nothing$/,
    ],
    ['a heartbeat naming a shard not open', withFields(heartbeat, { shard: 's1', openShards: ['s2'] }), /^shard: must be one of openShards, got "s1"$/],
    ['a table not captured', withFields(change, { table: '_prisma_migrations' }), /^table: is not a captured table, got "_prisma_migrations"$/],
    ['an inherited property as table', withFields(change, { table: 'constructor' }), /^table: is not a captured table, got "constructor"$/],
    ['a pointer without its object', withFields(pointer, { object: undefined }), /^object: missing$/],
    ['a pointer without a bucket', withFields(pointer, { object: { key: 'k', bytes: 1 } }), /^object.bucket: missing$/],
    ['a pointer to a key that is not text', withFields(pointer, { object: { bucket: 'b', key: 7, bytes: 1 } }), /^object.key: expected string, got 7$/],
    ['an unknown op', withFields(change, { op: 'x' }), /^op: expected "c" or "u" or "d" or "r", got "x"$/],
    ['no op', withFields(change, { op: undefined }), /^op: missing$/],
    ['no key', withFields(change, { key: undefined }), /^key: missing$/],
    [
      'the key of another table',
      withFields(change, { key: { sales_order_id: 42 } }),
      /^key.payment_id: must be an integer \(the primary key of payment\), got nothing$/,
    ],
    ['a key as text', withFields(change, { key: { payment_id: '42' } }), /^key.payment_id: must be an integer \(the primary key of payment\), got "42"$/],
    ['a delete with an after image', withFields(change, { op: 'd' }), /^after: must be null in a delete$/],
    ['an update without an after image', withFields(change, { after: null }), /^after: must be the new row in op u, got null$/],
    ['an insert whose after image is an array', withFields(change, { op: 'c', after: [] }), /^after: expected object, got an array$/],
    ['a before image that is text', withFields(change, { before: 'x' }), /^before: expected object, got "x"$/],
    ['no before image at all', withFields(change, { before: undefined }), /^before: missing$/],
    [
      'a value that is neither text, number, boolean nor null',
      withFields(change, { after: { payment_id: 42, note: { text: 'x' } } }),
      /^after.note: must be text, a number, a boolean or null$/,
    ],
    [
      'key runs out of order',
      withFields(range, {
        present: [
          [3, 4],
          [1, 2],
        ],
      }),
      /^present: must be ascending, disjoint \[first, last\] runs$/,
    ],
    ['a key run that is not a pair', withFields(range, { present: [[3]] }), /^present\[0\]: expected 2 items, got 1$/],
    [
      'two problems at once',
      withFields(change, { op: 'x', source: { ...source, pos: -1 } }),
      /^op: expected .*; source.pos: must be an integer from 0, got -1$/,
    ],
  ])('refuses %s, saying what is wrong', (_, text, reason) => {
    expect(() => decodeEvent(text)).toThrow(InvalidEventError);
    expect(() => decodeEvent(text)).toThrow(reason);
  });
});

describe("records: one event, or a bundle of one row's changes", () => {
  const v2 = { ...change, source: { ...source, pos: 3 }, after: { ...change.after, payment_amount: '99.99' } };
  const v3 = { ...change, op: 'd', source: { ...source, lsn: '00000016/B374E000', pos: 0 }, before: { payment_id: 42 }, after: null };

  it('carries several events in order, each its own line with its own (lsn, pos), so the archive stays one event a line', () => {
    const data = encodeRecord([change, v2, v3].map((e) => encodeEvent(e as ChangeEvent)));
    expect(decodeRecord(data)).toEqual([change, v2, v3]);
    expect(recordLines(data)).toHaveLength(3);
    // Firehose concatenates records: two bundles and an unbundled event read back as five lines
    const archive = data + encodeEvent(heartbeat) + encodeRecord([encodeEvent(change)]);
    expect(archive.split('\n').filter(Boolean).map(decodeEvent)).toEqual([change, v2, v3, heartbeat, change]);
  });

  it('reads an unbundled record as one event', () => {
    expect(decodeRecord(encodeEvent(pointer))).toEqual([pointer]);
  });

  it('names the event of a bundle that is wrong, and refuses text after the last newline or an empty line', () => {
    const bad = `${encodeEvent(change)}${withFields(change, { op: 'x' })}\n${encodeEvent(v2 as ChangeEvent)}`;
    expect(() => decodeRecord(bad)).toThrow(/^event 2 of 3: op: expected "c" or "u" or "d" or "r", got "x"$/);
    expect(() => decodeRecord(`${encodeEvent(change)}{"v":1`)).toThrow(/^event 2 of 2: not JSON/);
    expect(() => decodeRecord(`${encodeEvent(change)}\n${encodeEvent(change)}`)).toThrow(/^event 2 of 3: not JSON/);
  });
});

describe('partitionKeyOf', () => {
  it('keeps every change of one row on one partition key, and rows apart', () => {
    expect(partitionKeyOf(change)).toBe('payment:42');
    expect(partitionKeyOf({ table: 'payment', key: { payment_id: 43 } })).toBe('payment:43');
    expect(partitionKeyOf({ table: 'sales_order', key: { sales_order_id: 42 } })).toBe('sales_order:42');
  });
});

describe('LSNs and event order', () => {
  it('compares LSNs as numbers, whatever their padding', () => {
    expect(lsnToBigInt('00000016/B374D848')).toBe(0x16b374d848n);
    expect(lsnToBigInt('16/B374D848')).toBe(lsnToBigInt('00000016/b374d848'));
    expect(lsnToBigInt('0/100') > lsnToBigInt('0/FF')).toBe(true);
    expect(lsnToBigInt('1/0') > lsnToBigInt('0/FFFFFFFF')).toBe(true);
    expect(bigIntToLsn(0x16b374d848n)).toBe('16/B374D848');
    expect(bigIntToLsn(0n)).toBe('0/0');
    expect(lsnToBigInt(bigIntToLsn(0xffffffff_ffffffffn))).toBe(0xffffffff_ffffffffn);
  });

  it('compares LSN text as lsnToBigInt orders it, at the edges of each half', () => {
    const lsns = ['0/0', '0/FF', '00000000/00000100', '0/FFFFFFFF', '1/0', '00000001/00000001', 'FFFFFFFF/FFFFFFFE', 'ffffffff/ffffffff'];
    for (const a of lsns)
      for (const b of lsns) {
        const x = lsnToBigInt(a),
          y = lsnToBigInt(b);
        expect(Math.sign(compareLsn(a, b))).toBe(x < y ? -1 : x > y ? 1 : 0);
      }
  });

  it('orders events by commit LSN, then by position in the transaction', () => {
    const at = (lsn: string, pos: number) => ({ lsn, pos, xid: 1, commitTime: source.commitTime });
    const events = [at('0/100', 0), at('0/FF', 7), at('0/100', 2), at('00000000/000000FF', 3), at('1/0', 0)];
    expect([...events].sort(compareEventIds)).toEqual([at('00000000/000000FF', 3), at('0/FF', 7), at('0/100', 0), at('0/100', 2), at('1/0', 0)]);
  });
});
