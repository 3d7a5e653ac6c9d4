/** Retry under a policy: jittered doubling waits up to the cap, giving up on what is not transient or past the deadline. */
import { describe, expect, it } from 'vitest';
import { ceilingMs, Retry, type RetryPolicy } from './retry.ts';

const policy: RetryPolicy = { firstMs: 100, capMs: 1_000 };

describe('Retry', () => {
  it('waits at most firstMs after the first failure, doubling with each failure in a row up to capMs, jittered below that', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => ceilingMs(policy, n))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    const retry = new Retry(policy);
    const waits = Array.from({ length: 200 }, () => retry.failed(new Error('x'))!);
    waits.forEach((wait, i) => {
      expect(wait).toBeGreaterThanOrEqual(0);
      expect(wait).toBeLessThanOrEqual(ceilingMs(policy, i + 1));
    });
    expect(new Set(waits.slice(10)).size).toBeGreaterThan(1); // jittered, not a fixed step
  });

  it('starts again from the first wait after a success', () => {
    const retry = new Retry(policy);
    for (let i = 0; i < 5; i++) retry.failed(new Error('x'));
    retry.succeeded();
    expect(retry.failures).toBe(0);
    expect(retry.failed(new Error('x'))).toBeLessThanOrEqual(100);
  });

  it('gives up at once on an error that is not transient, and retries one that is', () => {
    const retry = new Retry({ ...policy, transient: (err) => (err as Error).name !== 'Refused' });
    expect(retry.failed(Object.assign(new Error('no'), { name: 'Refused' }))).toBeNull();
    expect(retry.failed(new Error('busy'))).not.toBeNull();
  });

  it('gives up once the deadline has passed since the loop began, or since its last success', () => {
    let now = 0;
    const retry = new Retry({ ...policy, deadlineMs: 1_000 }, () => now);
    now = 1_000;
    expect(retry.failed(new Error('x'))).not.toBeNull();
    now = 1_001;
    expect(retry.failed(new Error('x'))).toBeNull();
    retry.succeeded();
    now = 1_500;
    expect(retry.failed(new Error('x'))).not.toBeNull();
  });
});
