/** The manifest as the loader reads it back: what the processor writes comes back as it was; anything else is refused, naming the field. */
import { describe, expect, it } from 'vitest';
import { decodeManifest, type Manifest } from './manifest.ts';

const manifest: Manifest = {
  batchId: 'shardId-000000000000/0042-0001',
  shard: 'shardId-000000000000',
  firstSequence: '1',
  lastSequence: '42',
  events: 42,
  tables: [{ table: 'fact_sales_order', key: 'microbatches/shardId-000000000000/0042-0001/fact_sales_order.parquet', rows: 40 }],
  heartbeat: { lsn: '00000016/B374D848', commitTime: '2024-05-01T09:15:02.456789Z' },
  ends: [
    {
      table: 'dim_staff',
      cause: 'snapshot',
      lsn: '00000016/B374D848',
      pos: 3,
      commitTime: '2024-05-01T09:15:02.456789Z',
      after: null,
      through: 10,
      present: [[1, 4]],
    },
  ],
  maxCommitTime: '2024-05-01T09:15:02.456789Z',
  deadLetters: 0,
};
const text = (fields: Record<string, unknown>) => JSON.stringify({ ...manifest, ...fields });

describe('decodeManifest', () => {
  it('takes back what the processor wrote, and a manifest from before truncates and ranges had ends', () => {
    expect(decodeManifest(JSON.stringify(manifest), 'm.json')).toEqual(manifest);
    expect(decodeManifest(text({ ends: undefined, heartbeat: null, maxCommitTime: null }), 'm.json').ends).toBeUndefined();
  });

  it.each([
    ['a cut-short object', '{"batchId":', /^manifest m.json: not JSON: /],
    ['rows as text', text({ tables: [{ ...manifest.tables[0], rows: '40' }] }), /^manifest m.json: tables\[0\].rows: expected number, got "40"$/],
    [
      'a table that is not a load table',
      text({ tables: [{ ...manifest.tables[0], table: 'sales_order' }] }),
      /^manifest m.json: tables\[0\].table: is not a load table, got "sales_order"$/,
    ],
    ['a sequence number that is not one', text({ lastSequence: 'abc' }), /^manifest m.json: lastSequence: must be a sequence number, got "abc"$/],
    ['no heartbeat field', text({ heartbeat: undefined }), /^manifest m.json: heartbeat: missing$/],
    [
      'an end of another cause',
      text({ ends: [{ ...manifest.ends![0], cause: 'delete' }] }),
      /^manifest m.json: ends\[0\].cause: expected "truncate" or "snapshot", got "delete"$/,
    ],
  ])('refuses %s, naming the field', (_, body, reason) => {
    expect(() => decodeManifest(body, 'm.json')).toThrow(reason);
  });
});
