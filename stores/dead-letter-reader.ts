/**
 * The dead letters of the processed bucket as an operator reads them (`totes dead-letters`, the
 * dashboard's dead-letter panel): the newest first, each set-aside event with its row, and on
 * request the row's values, the personal ones opened through the key store (subject-keys.ts),
 * the one place anything opens them. An erased subject's value reads as the marker; a value
 * that cannot be opened (no key store, a key store that cannot be read) is shown as why, in
 * one line: never as its sealed text.
 */
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { Row, Value } from '../formats/change-event.ts';
import type { DeadLetter, SetAside } from '../formats/manifest.ts';
import { ERASED, isSealed, parseSealed, SEALED_IN_TEXT, subjectName } from '../formats/personal-data.ts';
import { isSourceTable, primaryKeyOf } from '../formats/source-tables.ts';
import { DEAD_LETTER_PREFIX } from './microbatch-store.ts';
import type { SubjectKeys } from './subject-keys.ts';

/** A value as shown: itself, or why it is not shown (a sealed value that was not opened). */
export type ShownValue = Value | { notOpened: string };

export interface DeadLetterEvent {
  /** Null where the line does not say (a malformed event). */
  table: string | null;
  op: string | null;
  key: Row | null;
  lsn: string | null;
  commitTime: string | null;
  /** The source column at fault, where one is (formats/manifest.ts SetAside). */
  column: string | null;
  /** The row's values (the new row; the old one for a delete); only when values are asked for. */
  values?: Record<string, ShownValue> | null;
  /** A line that is no JSON object: the line, sealed values in it opened as above; only when values are asked for. */
  text?: string;
}

export interface DeadLetterView {
  /** The object's key in the processed bucket. */
  key: string;
  at: string;
  shard: string;
  sequenceNumber: string;
  reason: string;
  events: DeadLetterEvent[];
}

export const NO_KEY_STORE = 'sealed: no key store configured';
const PARALLEL_GETS = 16;

/** One line, short: what an error says about why a value is not shown. */
const oneLine = (message: string) => message.replace(/\s+/g, ' ').slice(0, 200);

/** Opens sealed values through the key store, or says why it cannot. */
class Opener {
  private readonly erased = new Map<string, Promise<boolean>>();
  constructor(private readonly keys: SubjectKeys | null) {}

  async open(value: string): Promise<ShownValue> {
    if (!this.keys) return { notOpened: NO_KEY_STORE };
    try {
      const sealed = parseSealed(value);
      const opened = await this.keys.open(value);
      if (opened !== ERASED) return opened;
      // the key store answers ERASED for a key it has not got: only its tombstone says the subject is erased
      const name = subjectName(sealed.subject);
      if (!this.erased.has(name))
        this.erased.set(
          name,
          this.keys.record(sealed.subject).then((r) => Boolean(r?.erasedAt)),
        );
      if (await this.erased.get(name)) return ERASED;
      return { notOpened: `sealed: s3://${this.keys.bucket}/ holds no key ${sealed.version} of ${name} (another key store?)` };
    } catch (err) {
      return { notOpened: `sealed: cannot open: ${oneLine((err as Error).message)}` };
    }
  }

  async row(row: Row): Promise<Record<string, ShownValue>> {
    const shown: Record<string, ShownValue> = {};
    for (const column in row) shown[column] = isSealed(row[column]) ? await this.open(row[column] as string) : row[column];
    return shown;
  }

  /** `text` with each sealed value in it opened (values asked for) or withheld. */
  async text(text: string, values: boolean): Promise<string> {
    const found = [...new Set(text.match(SEALED_IN_TEXT) ?? [])];
    let out = text;
    for (const sealed of found) {
      const shown = values ? await this.open(sealed) : { notOpened: 'personal value' };
      out = out.replaceAll(sealed, showValue(shown));
    }
    return out;
  }
}

const stringOr = (v: unknown) => (typeof v === 'string' ? v : null);
const objectOr = (v: unknown) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

/** One set-aside line; `aside` names its row and column where the line itself cannot (a malformed event). */
async function eventView(line: string, aside: SetAside | undefined, opener: Opener, values: boolean): Promise<DeadLetterEvent> {
  const column = aside?.column ?? null;
  let raw: Record<string, unknown> | null = null;
  try {
    raw = objectOr(JSON.parse(line));
  } catch {
    // not JSON: a malformed event
  }
  if (!raw) {
    const table = aside?.table && isSourceTable(aside.table) ? aside.table : null;
    const key = table && aside?.key != null ? { [primaryKeyOf(table)]: aside.key } : null;
    return { table, op: null, key, lsn: null, commitTime: null, column, ...(values ? { text: await opener.text(line, true) } : {}) };
  }
  const source = objectOr(raw.source);
  const row = objectOr(raw.after) ?? objectOr(raw.before);
  return {
    table: stringOr(raw.table),
    op: stringOr(raw.op) ?? stringOr(raw.kind),
    key: objectOr(raw.key) as Row | null,
    lsn: stringOr(source?.lsn),
    commitTime: stringOr(source?.commitTime),
    column,
    ...(values ? { values: row ? await opener.row(row as Row) : null } : {}),
  };
}

/**
 * The newest `limit` dead letters (by when they were written; of one shard if given), newest
 * first. With `values`, each event's row values, personal ones opened through `keys` (null: no
 * key store, so they stay sealed and say so); without, the key store is not read.
 */
export async function newestDeadLetters(
  s3: S3Client,
  bucket: string,
  opts: { limit: number; shard?: string; values: boolean; keys: SubjectKeys | null },
): Promise<DeadLetterView[]> {
  const listed: { key: string; modified: number }[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: `${DEAD_LETTER_PREFIX}${opts.shard ? `${opts.shard}/` : ''}`, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) listed.push({ key: o.Key!, modified: o.LastModified?.getTime() ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  // names sort in stream order within a shard: the later of two written in the same second is the later name
  listed.sort((a, b) => b.modified - a.modified || (a.key < b.key ? 1 : a.key > b.key ? -1 : 0));
  const opener = new Opener(opts.keys);
  const views: DeadLetterView[] = [];
  const newest = listed.slice(0, opts.limit);
  for (let i = 0; i < newest.length; i += PARALLEL_GETS) {
    views.push(
      ...(await Promise.all(
        newest.slice(i, i + PARALLEL_GETS).map(async ({ key }) => {
          const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
          const letter = JSON.parse(await out.Body!.transformToString('utf8')) as DeadLetter;
          const lines = letter.payload.split('\n');
          // setAside (absent in older dead letters) holds one entry per line, in order
          const asides = letter.setAside?.length === lines.length ? letter.setAside : [];
          const events: DeadLetterEvent[] = [];
          for (const [n, line] of lines.entries()) events.push(await eventView(line, asides[n], opener, opts.values));
          return {
            key,
            at: letter.at,
            shard: letter.shard,
            sequenceNumber: letter.sequenceNumber,
            reason: await opener.text(letter.reason, opts.values),
            events,
          };
        }),
      )),
    );
  }
  return views;
}

/** A shown value as text: why it is not shown in angle brackets. */
export function showValue(v: ShownValue): string {
  if (v !== null && typeof v === 'object') return `<${v.notOpened}>`;
  return v === null ? 'null' : String(v);
}
