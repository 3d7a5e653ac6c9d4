/**
 * The replay's progress bar on stderr: redrawn in place on a terminal, a plain line every few
 * seconds otherwise (CI logs). Rates and the ETA are over the current phase.
 */
import type { ReplayProgress } from './replay.ts';

const n = (x: number) => Math.round(x).toLocaleString('en-GB');

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

  format(p: ReplayProgress, now: number): string {
    const seconds = Math.max((now - this.phaseStartedAt) / 1000, 1e-3);
    if (p.phase === 'list') return 'listing the archive…';
    if (p.phase === 'order') return `ordering and de-duplicating ${n(p.eventsRead)} events…`;
    const [done, total, rate, unit] =
      p.phase === 'read'
        ? [p.objectsRead, p.objectsTotal, p.eventsRead / seconds, `objects, ${n(p.eventsRead)} events`]
        : [p.eventsLoaded, p.eventsTotal, p.eventsLoaded / seconds, 'events'];
    const fraction = total > 0 ? done / total : 1;
    const perUnit = p.phase === 'read' ? p.objectsRead / seconds : rate;
    const eta = perUnit > 0 ? (total - done) / perUnit : Infinity;
    return `${p.phase === 'read' ? 'read' : 'load'} ${bar(fraction)} ${n(done)}/${n(total)} ${unit} │ ${n(rate)} events/s │ ETA ${duration(eta)}`;
  }
}
