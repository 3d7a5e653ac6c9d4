/**
 * Decides how far the replication slot may be confirmed: only past commits whose every event
 * the sink has accepted. With nothing in flight, a keepalive's LSN may be confirmed too, so an
 * idle slot keeps moving while other tables or databases write WAL.
 */
import { lsnToBigInt } from '../formats/change-event.ts';

export class Acker {
  private pending: { lastIndex: number; lsn: string }[] = [];
  private confirmed = '0/0';
  private accepted = -1;

  constructor(private readonly onConfirm: (lsn: string) => void) {}

  get confirmedLsn(): string {
    return this.confirmed;
  }

  /** A transaction committed; its last event has sink index `lastIndex`. */
  committed(lastIndex: number, endLsn: string): void {
    if (lastIndex <= this.accepted && this.pending.length === 0) this.confirm(endLsn);
    else this.pending.push({ lastIndex, lsn: endLsn });
  }

  /** The sink accepted every event up to `through`. */
  accept(through: number): void {
    this.accepted = through;
    let lsn: string | null = null;
    while (this.pending.length > 0 && this.pending[0].lastIndex <= through) lsn = this.pending.shift()!.lsn;
    if (lsn) this.confirm(lsn);
  }

  /** A keepalive from the server: confirm its position if nothing is waiting. */
  idle(lsn: string, nothingBuffered: boolean): void {
    if (nothingBuffered && this.pending.length === 0) this.confirm(lsn);
  }

  private confirm(lsn: string): void {
    if (lsnToBigInt(lsn) <= lsnToBigInt(this.confirmed)) return;
    this.confirmed = lsn;
    this.onConfirm(lsn);
  }
}
