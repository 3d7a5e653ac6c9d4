/**
 * COPY … FROM STDIN on a node-postgres client. node-postgres runs COPY only through a
 * "submittable" (what pg-copy-streams provides); copyIn is the smallest one: send the data in
 * chunks, then CopyDone. copyRows sends the text format; pg-binary-copy.ts the binary one.
 */
import type pg from 'pg';

export type CopyValue = string | number | boolean | null | undefined;

const CHUNK_BYTES = 256 * 1024;

const SPECIAL = /[\\\t\n\r]/;
const ESCAPED: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** One value in COPY's text format (a string is scanned once, and copied only when it needs escaping). */
function copyText(value: CopyValue): string {
  if (value === null || value === undefined) return '\\N';
  if (typeof value === 'string') return SPECIAL.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => ESCAPED[c]) : value;
  if (typeof value === 'boolean') return value ? 't' : 'f';
  return String(value);
}

interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(message: string): void;
}

/** What a COPY's writer sends: data, then the end, or a failure (Postgres then ends the COPY with an error). */
export interface CopyOut {
  send(chunk: Buffer): void;
  end(): void;
  fail(message: string): void;
}

/**
 * Run `command` (a COPY … FROM STDIN) and have `write` send its data, all at once when Postgres
 * is ready for it; resolves with the row count Postgres reports.
 */
export function copyIn(client: pg.Client | pg.PoolClient, command: string, write: (out: CopyOut) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    let copied = 0;
    let failure: Error | null = null;
    const submittable = {
      submit(connection: CopyConnection) {
        connection.query(command);
      },
      handleCopyInResponse(connection: CopyConnection) {
        write({
          send: (chunk) => connection.sendCopyFromChunk(chunk),
          end: () => connection.endCopyFrom(),
          fail: (message) => connection.sendCopyFail(message),
        });
      },
      handleCommandComplete(msg: { text?: string }) {
        copied = Number(/COPY (\d+)/.exec(msg.text ?? '')?.[1] ?? 0);
      },
      // at once: a connection that dies mid-COPY sends no ReadyForQuery
      handleError(err: Error) {
        failure = err;
        reject(err);
      },
      handleReadyForQuery() {
        if (!failure) resolve(copied);
      },
    };
    void client.query(submittable as unknown as pg.Submittable);
  });
}

/**
 * COPY `rows` (values in `columns` order) into `table`; resolves with the row count Postgres
 * reports. `convert` turns a column's value into what is copied (given the row too: a column the
 * row does not hold is derived from the others).
 */
export function copyRows(
  client: pg.Client | pg.PoolClient,
  table: string,
  columns: string[],
  rows: Record<string, CopyValue>[],
  convert: Record<string, (value: CopyValue, row: Record<string, CopyValue>) => CopyValue> = {},
): Promise<number> {
  const converters = columns.map((c) => convert[c]);
  return copyIn(client, `COPY ${table} (${columns.map((c) => `"${c}"`).join(', ')}) FROM STDIN`, (out) => {
    let chunk = '';
    for (const row of rows) {
      let line = '';
      for (let i = 0; i < columns.length; i++) {
        const value = row[columns[i]];
        const text = copyText(converters[i] ? converters[i](value, row) : value);
        line = i === 0 ? text : `${line}\t${text}`;
      }
      chunk += `${line}\n`;
      if (chunk.length >= CHUNK_BYTES) {
        out.send(Buffer.from(chunk));
        chunk = '';
      }
    }
    if (chunk) out.send(Buffer.from(chunk));
    out.end();
  });
}
