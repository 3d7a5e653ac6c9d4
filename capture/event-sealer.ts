/**
 * Seals every personal value of a change before it leaves capture (formats/personal-data.ts):
 * under its row's data subject's key, in `after` and, where the replica identity sends whole old
 * rows, in `before`. A change of a table without personal data passes as it is, without waiting.
 *
 * Sealing costs a cipher per value, and a row's values mostly repeat from one change to the next
 * (an update of a staff member's department carries their name again): a value sealed under a
 * key is sealed once and its text reused while that key is the subject's current one. The same
 * text for the same value of the same subject says no more than the row's key already does.
 */
import type { ChangeEvent, Row } from '../formats/change-event.ts';
import { ERASED, personalColumnsOf, seal, subjectOf } from '../formats/personal-data.ts';
import type { SourceTable } from '../formats/source-tables.ts';
import type { SubjectKeys } from '../stores/subject-keys.ts';

/** Sealed texts kept at most; past it they are all let go. */
const SEALED_KEPT = 10_000;

export class EventSealer {
  /** Sealed texts by clear value, under each key (a key the store lets go of takes its texts with it). */
  private sealed = new WeakMap<Uint8Array, Map<string, string>>();
  private kept = 0;

  constructor(private readonly keys: SubjectKeys) {}

  seal(event: ChangeEvent): ChangeEvent | Promise<ChangeEvent> {
    const columns = personalColumnsOf(event.table);
    if (columns.length === 0) return event;
    return this.sealRows(event, columns);
  }

  private async sealRows(event: ChangeEvent, columns: readonly string[]): Promise<ChangeEvent> {
    const [before, after] = await Promise.all([this.sealRow(event.table, event.before, columns), this.sealRow(event.table, event.after, columns)]);
    return { ...event, before, after };
  }

  private async sealRow(table: SourceTable, row: Row | null, columns: readonly string[]): Promise<Row | null> {
    if (row === null || !columns.some((c) => typeof row[c] === 'string')) return row;
    const subject = subjectOf(table, row)!;
    const current = await this.keys.current(subject);
    // an erased subject's values never leave capture, not even sealed
    if (current === null) return Object.fromEntries(Object.entries(row).map(([c, v]) => [c, columns.includes(c) && typeof v === 'string' ? ERASED : v]));
    const { version, key } = current;
    if (this.kept >= SEALED_KEPT) {
      this.sealed = new WeakMap();
      this.kept = 0;
    }
    let texts = this.sealed.get(key);
    if (!texts) {
      texts = new Map();
      this.sealed.set(key, texts);
    }
    const out = { ...row };
    for (const c of columns) {
      const value = row[c];
      if (typeof value !== 'string') continue;
      let text = texts.get(value);
      if (text === undefined) {
        text = seal(value, subject, version, key);
        texts.set(value, text);
        this.kept++;
      }
      out[c] = text;
    }
    return out;
  }
}
