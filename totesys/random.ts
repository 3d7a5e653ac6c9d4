/** A small seeded PRNG (mulberry32) so seeds and simulated workloads are reproducible. */
export class Random {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** A money amount in [min, max] with two decimals, as exact text. */
  money(min: number, max: number): string {
    const cents = this.int(Math.round(min * 100), Math.round(max * 100));
    return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
  }
}

/** Millisecond epoch → `timestamp(3)` text in UTC wall time ("2024-05-01 09:15:02.123"). */
export function timestampText(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

/** Millisecond epoch → "YYYY-MM-DD". */
export function dateText(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
