/**
 * A chunk's window in isolation, with the stream's messages delivered by hand: what a change
 * or a TRUNCATE between the watermarks does to the rows emitted and to the range's present
 * keys. A stand-in answers the chunk's queries, because a TRUNCATE cannot be made to commit
 * between a real chunk read and its high watermark on demand. The real stream is in
 * row-ends.pg.test.ts and capture.pg.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { SnapshotRangeEvent } from '../formats/change-event.ts';
import type pg from '../lib/pg.ts';
import { MemorySink } from '../test/memory-sink.ts';
import { ChunkedSnapshot, SNAPSHOT_HIGH_PREFIX, SNAPSHOT_LOW_PREFIX } from './chunked-snapshot.ts';
import type { SignalWriter } from './signal-writer.ts';

interface ClosedChunk {
  rows: Record<string, unknown>[];
  range: Pick<SnapshotRangeEvent, 'after' | 'through' | 'present'>;
}

/** Snapshots `design` (keys 1, 2, 4) in one chunk; `between` runs when the stream reaches the high watermark, before the chunk closes. */
async function oneChunk(between: (s: ChunkedSnapshot) => void, chunkRows = 10): Promise<ClosedChunk> {
  const abort = new AbortController();
  let requests = 1;
  const pool = {
    query: async (sql: string) => {
      if (sql.includes('NOT done')) return { rows: requests-- > 0 ? [{ table_name: 'design', last_key: null }] : [] };
      if (sql.includes('pg_current_snapshot()')) return { rows: [{ xids: [], n: 0 }] }; // no other transaction running
      if (sql.startsWith('SELECT * FROM public."design"')) return { rows: [1, 2, 4].map((design_id) => ({ design_id, design_name: `d${design_id}` })) };
      return { rows: [] };
    },
  } as unknown as pg.Pool;
  const sink = new MemorySink();
  let pos = 0;
  const position = { nextSource: () => ({ lsn: '0/100', pos: pos++, xid: 1, commitTime: '2024-05-01T09:00:00.000000Z' }) };
  const signals = {
    write: async (kind: string, id: string) => {
      if (kind === SNAPSHOT_LOW_PREFIX) await snapshot.signal(kind, id, position);
      if (kind === SNAPSHOT_HIGH_PREFIX)
        setImmediate(() => {
          between(snapshot);
          void snapshot.signal(kind, id, position).then(() => abort.abort());
        });
    },
  } as unknown as SignalWriter;
  const snapshot: ChunkedSnapshot = new ChunkedSnapshot({ pool, slotName: 'slot', chunkRows, signals, sink });
  await snapshot.run(abort.signal);
  const range = sink.events.find((e): e is SnapshotRangeEvent => e.kind === 'snapshot-range');
  if (!range) throw new Error('the chunk never closed');
  const rows = sink.events.flatMap((e) => (e.kind === 'change' ? [e.after as Record<string, unknown>] : []));
  return { rows, range: { after: range.after, through: range.through, present: range.present } };
}

describe('a snapshot chunk', () => {
  it('emits what it read, and says those keys are all its range holds', async () => {
    const chunk = await oneChunk(() => undefined);
    expect(chunk.rows.map((r) => r.design_id)).toEqual([1, 2, 4]);
    expect(chunk.range).toEqual({
      after: null,
      through: null,
      present: [
        [1, 2],
        [4, 4],
      ],
    });
  });

  it('bounds a full chunk at its last key', async () => {
    const chunk = await oneChunk(() => undefined, 3);
    expect(chunk.range).toMatchObject({ after: null, through: 4 });
  });

  it('leaves a key the stream changed to the stream, and keeps it present', async () => {
    const chunk = await oneChunk((s) => {
      s.changed('design', 2); // updated between the watermarks
      s.changed('design', 3); // inserted between them, after the read
    });
    expect(chunk.rows.map((r) => r.design_id)).toEqual([1, 4]);
    expect(chunk.range.present).toEqual([[1, 4]]);
  });

  it('emits no rows when the table was truncated between the watermarks', async () => {
    const chunk = await oneChunk((s) => s.truncated('design'));
    expect(chunk.rows).toEqual([]);
    const other = await oneChunk((s) => s.truncated('staff'));
    expect(other.rows).toHaveLength(3);
  });
});
