/**
 * Figures that hold on a shared machine: a figure and its reference are measured in turns
 * (A, B, A, B, …), so a burst of load elsewhere falls on both, and each ratio is the median of
 * the per-turn ratios, printed with its min and max.
 */

/** Median, min and max of a set of runs, and the runs themselves in the order they ran. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function spread(runs: number[]): Spread {
  if (runs.length === 0) throw new Error('no runs to summarise');
  const sorted = [...runs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], runs };
}

/** Per-turn ratios a[i] / b[i], summarised. */
export function ratioSpread(a: number[], b: number[]): Spread {
  if (a.length !== b.length) throw new Error(`${a.length} runs against ${b.length}: ratios need turns in pairs`);
  return spread(a.map((x, i) => x / b[i]));
}

/** Runs `a` then `b`, `turns` times over; turn i gets its index (0-based). */
export async function interleave<A, B>(turns: number, a: (turn: number) => Promise<A>, b: (turn: number) => Promise<B>): Promise<{ a: A[]; b: B[] }> {
  const out = { a: [] as A[], b: [] as B[] };
  for (let turn = 0; turn < turns; turn++) {
    out.a.push(await a(turn));
    out.b.push(await b(turn));
  }
  return out;
}

/** Runs `f` `turns` times in a row. */
export async function repeat<T>(turns: number, f: (turn: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let turn = 0; turn < turns; turn++) out.push(await f(turn));
  return out;
}
