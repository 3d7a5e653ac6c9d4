/**
 * The replay's progress bar on stderr: redrawn in place on a terminal, a plain line every few
 * seconds otherwise (CI logs). Rates and the ETA are over the current phase. It says what is
 * known: the objects and bytes listed up front, the events as they are read and loaded; never
 * an events total before the archive has been read.
 */
import type { ReplayProgress } from './replay-options.ts';

const n = (x: number) => Math.round(x).toLocaleString('en-GB');
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '–';
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

function bar(fraction: number, width = 24): string {
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export class ReplayProgressBar {
  private phase: ReplayProgress['phase'] | null = null;
  private phaseStartedAt = 0;
  private lastDrawAt = 0;
  private latest: ReplayProgress | null = null;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly plainEveryMs = 5_000,
  ) {}

  /** Pass as `onProgress`. */
  readonly update = (p: ReplayProgress): void => {
    const now = Date.now();
    if (p.phase !== this.phase) {
      if (this.latest && this.out.isTTY) this.out.write(`\r\x1b[2K${this.format(this.latest, now)}\n`);
      this.phase = p.phase;
      this.phaseStartedAt = now;
      this.lastDrawAt = 0;
    }
    this.latest = p;
    const every = this.out.isTTY ? 100 : this.plainEveryMs;
    if (now - this.lastDrawAt < every) return;
    this.lastDrawAt = now;
    this.out.write(this.out.isTTY ? `\r\x1b[2K${this.format(p, now).slice(0, (this.out.columns ?? 200) - 1)}` : `${this.format(p, now)}\n`);
  };

  /** Draw the final state and end the line. */
  done(): void {
    if (this.latest) this.out.write(`${this.out.isTTY ? '\r\x1b[2K' : ''}${this.format(this.latest, Date.now())}\n`);
    this.latest = null;
  }

  /**
   * The bar is over the bytes the listing gave (events are known only once read); the ETA
   * assumes the rest reads at this phase's byte rate so far, hence the "~".
   */
  format(p: ReplayProgress, now: number): string {
    if (p.phase === 'list') return 'listing the archive…';
    const seconds = Math.max((now - this.phaseStartedAt) / 1000, 1e-3);
    const fraction = p.bytesTotal > 0 ? p.bytesRead / p.bytesTotal : p.objectsTotal > 0 ? p.objectsRead / p.objectsTotal : 1;
    const byteRate = p.bytesRead / seconds;
    const eta = p.bytesRead >= p.bytesTotal ? 0 : byteRate > 0 ? (p.bytesTotal - p.bytesRead) / byteRate : Infinity;
    const read = `${n(p.objectsRead)}/${n(p.objectsTotal)} objects, ${mib(p.bytesRead)}/${mib(p.bytesTotal)} MiB`;
    const done = p.phase === 'check' ? `${n(p.eventsRead)} events checked` : `${n(p.eventsRead)} events read, ${n(p.eventsLoaded)} loaded`;
    const rate = (p.phase === 'check' ? p.eventsRead : p.eventsLoaded) / seconds;
    return `${p.phase} ${bar(fraction)} ${read} │ ${done} │ ${n(rate)} events/s │ ETA ~${duration(eta)}`;
  }
}
