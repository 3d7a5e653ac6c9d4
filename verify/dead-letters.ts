/**
 * The dead letters in the processed bucket, read by verify itself: which source rows they name.
 * A dead letter is one JSON object under `dead-letter/<shard>/<sequence>.json` (formats/manifest.ts
 * DeadLetter) whose payload is the record's set-aside events, one per line; an event names its
 * row by `table` and `key` (formats/change-event.ts). A line that is no event (a malformed
 * record) names no row.
 */
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { DeadLetter } from '../formats/manifest.ts';

const PREFIX = 'dead-letter/';
const PARALLEL_GETS = 16;

const rowId = (sourceTable: string, key: string) => `${sourceTable} ${key}`;

/** The rows a dead letter's payload names (source table and primary key value). */
export function rowsNamed(payload: string): string[] {
  const rows: string[] = [];
  for (const line of payload.split('\n')) {
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof event !== 'object' || event === null) continue;
    const { table, key } = event as { table?: unknown; key?: unknown };
    if (typeof table !== 'string' || typeof key !== 'object' || key === null) continue;
    const values = Object.values(key);
    if (values.length === 1) rows.push(rowId(table, String(values[0])));
  }
  return rows;
}

export class DeadLetters {
  /** Row → the keys of the dead letters that name it. */
  private byRow = new Map<string, string[]>();
  private read = new Set<string>();

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
  ) {}

  /** Reads every dead letter not read yet: their names never change, so a later pass reads only the new ones. */
  async refresh(): Promise<void> {
    const unread: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: PREFIX, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key && !this.read.has(o.Key)) unread.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    for (let i = 0; i < unread.length; i += PARALLEL_GETS) {
      await Promise.all(
        unread.slice(i, i + PARALLEL_GETS).map(async (key) => {
          const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
          const letter: DeadLetter = JSON.parse(await out.Body!.transformToString('utf8'));
          for (const row of rowsNamed(letter.payload)) this.byRow.set(row, [...(this.byRow.get(row) ?? []), key]);
          this.read.add(key);
        }),
      );
    }
  }

  /** A dead letter that names the row (the last by name, so the same on every run), or null. */
  naming(sourceTable: string, key: string): string | null {
    return this.byRow.get(rowId(sourceTable, key))?.sort().at(-1) ?? null;
  }
}
