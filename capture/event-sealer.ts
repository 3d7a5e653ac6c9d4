/**
 * Seals every personal value of a change before it leaves capture (formats/personal-data.ts):
 * under its row's data subject's key, in `after` and, where the replica identity sends whole old
 * rows, in `before`. A change of a table without personal data passes as it is, without waiting.
 *
 * Sealing costs a cipher per value, and a row's values mostly repeat from one change to the next
 * (an update of a staff member's department carries their name again): a value sealed under a
 * key is sealed once and its text reused while that key is the subject's current one. The same
 * text for the same value of the same subject says no more than the row's key already does.
 * While the key store's cache holds the subject's key, a change is sealed without waiting: a
 * promise per change cost more than the sealing (docs/performance.md).
 */
import type { ChangeEvent, Row } from '../formats/change-event.ts';
import { ERASED, personalColumnsOf, seal, type Subject, subjectName, subjectOf } from '../formats/personal-data.ts';
import type { SourceTable } from '../formats/source-tables.ts';
import type { CurrentKey, SubjectKeys } from '../stores/subject-keys.ts';

/** Sealed texts kept at most; past it they are all let go. */
const SEALED_KEPT = 10_000;

/** A row to seal, its subject, and their key (null: erased) once known. */
interface Pending {
  row: Row;
  subject: Subject;
  current: CurrentKey | null | undefined;
}

export class EventSealer {
  /**
   * Sealed texts by clear value, under each subject's key version (a version names one key for
   * good: a subject never gets another key under it).
   */
  private sealed = new Map<string, Map<string, string>>();
  private kept = 0;

  constructor(private readonly keys: SubjectKeys) {}

  seal(event: ChangeEvent): ChangeEvent | Promise<ChangeEvent> {
    const columns = personalColumnsOf(event.table);
    if (columns.length === 0) return event;
    const before = this.pending(event.table, event.before, columns);
    const after = this.pending(event.table, event.after, columns);
    const unknown = [before, after].filter((p): p is Pending => p !== null && p.current === undefined);
    if (unknown.length === 0) return this.sealEvent(event, columns, before, after);
    // the cache could not answer: ask the store
    return Promise.all(
      unknown.map(async (p) => {
        p.current = await this.keys.current(p.subject);
      }),
    ).then(() => this.sealEvent(event, columns, before, after));
  }

  /** The row with its subject and cached key, or null when it holds no personal value to seal. */
  private pending(table: SourceTable, row: Row | null, columns: readonly string[]): Pending | null {
    if (row === null || !columns.some((c) => typeof row[c] === 'string')) return null;
    const subject = subjectOf(table, row)!;
    return { row, subject, current: this.keys.currentCached(subject) };
  }

  private sealEvent(event: ChangeEvent, columns: readonly string[], before: Pending | null, after: Pending | null): ChangeEvent {
    if (!before && !after) return event;
    return { ...event, before: before ? this.sealRow(before, columns) : event.before, after: after ? this.sealRow(after, columns) : event.after };
  }

  private sealRow({ row, subject, current }: Pending, columns: readonly string[]): Row {
    // an erased subject's values never leave capture, not even sealed
    if (!current) return Object.fromEntries(Object.entries(row).map(([c, v]) => [c, columns.includes(c) && typeof v === 'string' ? ERASED : v]));
    const { version, key } = current;
    if (this.kept >= SEALED_KEPT) {
      this.sealed = new Map();
      this.kept = 0;
    }
    const under = `${subjectName(subject)}:${version}`;
    let texts = this.sealed.get(under);
    if (!texts) {
      texts = new Map();
      this.sealed.set(under, texts);
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
