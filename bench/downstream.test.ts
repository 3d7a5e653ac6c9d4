import { describe, expect, it } from 'vitest';
import { backlogDrainMinutes } from './downstream.ts';

describe('the 72-hour backlog figure', () => {
  it('is the backlog over what the loader takes beyond the changes still arriving', () => {
    // 72 h x 1,000 changes/s = 259,200,000 changes, drained at 151,000 - 1,000 a second
    expect(backlogDrainMinutes(151_000)).toBeCloseTo(28.8, 6);
    expect(backlogDrainMinutes(2_000)).toBeCloseTo(4_320, 6);
  });

  it('is infinite for a loader no faster than the changes arrive', () => {
    expect(backlogDrainMinutes(1_000)).toBe(Number.POSITIVE_INFINITY);
    expect(backlogDrainMinutes(0)).toBe(Number.POSITIVE_INFINITY);
  });
});
