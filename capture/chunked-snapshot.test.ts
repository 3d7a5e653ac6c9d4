/**
 * A chunk's window in isolation, with the stream's messages delivered by hand: what a change
 * or a TRUNCATE between the watermarks does to the rows emitted and to the range's present
 * keys. A stand-in answers the chunk's queries, because a TRUNCATE cannot be made to commit
 * between a real chunk read and its high watermark on demand. The real stream is in
 * row-ends.pg.test.ts and capture.pg.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type pg from '../lib/pg.ts';
import { ChunkedSnapshot, type ClosedChunk, SNAPSHOT_HIGH_PREFIX, SNAPSHOT_LOW_PREFIX } from './chunked-snapshot.ts';

/** Snapshots `design` (keys 1, 2, 4) in one chunk; `between` runs when the stream reaches the high watermark, before the chunk closes. */
async function oneChunk(between: (s: ChunkedSnapshot) => void, chunkRows = 10): Promise<ClosedChunk> {
  const abort = new AbortController();
  let requests = 1;
  const pool = {
    query: async (sql: string) => {
      if (sql.includes('NOT done')) return { rows: requests-- > 0 ? [{ table_name: 'design', last_key: null }] : [] };
      if (sql.startsWith('SELECT * FROM public."design"')) return { rows: [1, 2, 4].map((design_id) => ({ design_id, design_name: `d${design_id}` })) };
      return { rows: [] };
    },
  } as unknown as pg.Pool;
  let closed: ClosedChunk | undefined;
  const snapshot: ChunkedSnapshot = new ChunkedSnapshot(
    pool,
    'slot',
    chunkRows,
    async (prefix, id) => {
      if (prefix === SNAPSHOT_LOW_PREFIX) snapshot.opened(id);
      if (prefix === SNAPSHOT_HIGH_PREFIX)
        setImmediate(() => {
          between(snapshot);
          closed = snapshot.closed(id);
          closed?.done();
        });
    },
    async () => {
      abort.abort();
    },
  );
  await snapshot.run(abort.signal);
  if (!closed) throw new Error('the chunk never closed');
  return closed;
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
      s.observe('design', 2); // updated between the watermarks
      s.observe('design', 3); // inserted between them, after the read
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
