/** Writes capture's signals (heartbeats, snapshot watermarks) into the WAL by the carrier its server takes. */
import { signalStatement, type SignalCarrier } from '../formats/source-signals.ts';
import type pg from '../lib/pg.ts';

export class SignalWriter {
  constructor(
    private readonly db: pg.Pool,
    readonly carrier: SignalCarrier,
    /** This writer's row of the signal table: the slot name, one row per capture service. */
    private readonly writer: string,
  ) {}

  /** Returns a WAL position at or before the signal's commit. */
  async write(kind: string, content = ''): Promise<string> {
    const { text, values } = signalStatement(this.carrier, this.writer, { kind, content });
    return (await this.db.query(text, values)).rows[0].lsn;
  }
}
