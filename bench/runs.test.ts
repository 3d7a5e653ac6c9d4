import { describe, expect, it } from 'vitest';
import { interleave, ratioSpread, spread } from './runs.ts';

describe('bench runs', () => {
  it('summarises runs by median, min and max, keeping their order', () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, runs: [3, 1, 2] });
    expect(spread([4, 1, 3, 2]).median).toBe(2.5);
    expect(() => spread([])).toThrow();
  });

  it('takes the median of per-turn ratios, not the ratio of medians', () => {
    // turn by turn 2x, 1x, 1x; the medians (20 and 10) would say 2x
    expect(ratioSpread([20, 5, 40], [10, 5, 40])).toMatchObject({ median: 1, min: 1, max: 2 });
    expect(() => ratioSpread([1, 2], [1])).toThrow();
  });

  it('runs the two sides in turns', async () => {
    const order: string[] = [];
    const out = await interleave(
      3,
      async (i) => order.push(`a${i}`),
      async (i) => order.push(`b${i}`),
    );
    expect(order).toEqual(['a0', 'b0', 'a1', 'b1', 'a2', 'b2']);
    expect(out.a).toHaveLength(3);
  });
});
