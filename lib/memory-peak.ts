/** The process's memory high-water over a span (RSS and V8 heap in use), sampled: what a run needed at most. */
export class MemoryPeak {
  rssBytes = 0;
  heapBytes = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(intervalMs = 100) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** Sample now as well (at a phase's end, where the most is held). */
  sample(): void {
    const m = process.memoryUsage();
    this.rssBytes = Math.max(this.rssBytes, m.rss);
    this.heapBytes = Math.max(this.heapBytes, m.heapUsed);
  }

  /** Stop sampling; the peaks in MB. */
  stop(): { peakRssMb: number; peakHeapMb: number } {
    this.sample();
    clearInterval(this.timer);
    return { peakRssMb: Math.round(this.rssBytes / 2 ** 20), peakHeapMb: Math.round(this.heapBytes / 2 ** 20) };
  }
}
