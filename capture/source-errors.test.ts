/** Starting capture's retry policy: transient errors for 90 s, with waits from 0.5 s up to 10 s; what a person must fix, never. */
import { describe, expect, it } from 'vitest';
import { ceilingMs, Retry } from '../lib/retry.ts';
import { SQLSTATE } from '../lib/sqlstate.ts';
import { SourceNotReady, START_RETRY } from './source-errors.ts';

const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const slotInUse = Object.assign(new Error('replication slot "totes" is active for PID 42'), { code: SQLSTATE.object_in_use });

describe('START_RETRY', () => {
  it('retries an unreachable server and a slot still held, waiting at most 0.5 s first and 10 s at most', () => {
    const retry = new Retry(START_RETRY);
    expect(retry.failed(refused)).toBeLessThanOrEqual(500);
    expect(retry.failed(slotInUse)).toBeLessThanOrEqual(1_000);
    expect(ceilingMs(START_RETRY, 10)).toBe(10_000);
  });

  it('gives up at once on what a person must fix, and on anything transient after 90 s', () => {
    let now = 0;
    const retry = new Retry(START_RETRY, () => now);
    expect(retry.failed(new SourceNotReady('role "x" may not use replication', 'grant it'))).toBeNull();
    now = 90_000;
    expect(retry.failed(refused)).not.toBeNull();
    now = 90_001;
    expect(retry.failed(refused)).toBeNull();
  });
});
