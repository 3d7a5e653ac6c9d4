/**
 * Seals every personal value of a change before it leaves capture (formats/personal-data.ts):
 * under its row's data subject's key, in `after` and, where the replica identity sends whole old
 * rows, in `before`. A change of a table without personal data passes as it is, without waiting.
 */
import type { ChangeEvent, Row } from '../formats/change-event.ts';
import { personalColumnsOf, seal, subjectOf } from '../formats/personal-data.ts';
import type { SourceTable } from '../formats/source-tables.ts';
import type { SubjectKeys } from '../stores/subject-keys.ts';

export class EventSealer {
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
    const { version, key } = await this.keys.current(subject);
    const sealed = { ...row };
    for (const c of columns) {
      const value = row[c];
      if (typeof value === 'string') sealed[c] = seal(value, subject, version, key);
    }
    return sealed;
  }
}
