/**
 * Turns wal2json format-version 2 messages into the same change events PgoutputDecoder makes
 * for the same changes. Pure: no I/O. Format-version 2 sends one message per action, and BEGIN
 * already carries the commit LSN, so events are built as they arrive, as with pgoutput.
 *
 * Values: wal2json 2.5 prints numeric, int8 and float columns as bare JSON numbers (it has no
 * numeric-data-types-as-string), which JSON.parse would turn into floats. So every bare number
 * is quoted before parsing, and each column's text goes through node-postgres's parser for its
 * type oid, exactly as pg-logical-replication does for pgoutput's text values: int4 → number,
 * numeric and int8 → exact string, timestamps and dates stay text (lib/pg.ts).
 *
 * Differences from pgoutput: wal2json 2.5 prints a numeric NaN or Infinity as null (the
 * processor sets a null in a NOT NULL column aside, as it does pgoutput's 'NaN'); there are no
 * relation messages, so the columns each change sends (names and type oids) make the 'schema'
 * items instead.
 */
import * as v from '@badrap/valita';
import type { Wal2JsonPluginOptions } from 'pg-logical-replication';
import type { EventSource, Op, Row, Value } from '../formats/change-event.ts';
import { check } from '../formats/schema.ts';
import { SIGNAL_TABLE_NAME, signalFromRow } from '../formats/source-signals.ts';
import { SOURCE_TABLES, SOURCE_TABLE_NAMES, isSourceTable, type SourceTable } from '../formats/source-tables.ts';
import pg from '../lib/pg.ts';
import { type Decoded, isSignalTable, microsToIso, rowChange, signal, TransactionCursor, truncated } from './decoding.ts';
import { UNSENT_TYPE } from './schema-watch.ts';
import type { StreamDecoder } from './decoding.ts';

/**
 * What the decoder needs from wal2json: BEGIN with xid, commit time and commit LSN, COMMIT with
 * its end LSN, a type oid per column, and only the 11 captured tables and the signal table.
 */
export const WAL2JSON_OPTIONS: Wal2JsonPluginOptions = {
  formatVersion: '2',
  includeTransaction: true,
  includeXids: true,
  includeTimestamp: true,
  includeLsn: true,
  includeTypeOids: true,
  includeTypes: false, // the oid picks the parser; names would only lengthen every message
  addTables: [...SOURCE_TABLE_NAMES.map((t) => `public.${t}`), SIGNAL_TABLE_NAME].join(','),
};

/** A column after quoteNumbers: numbers arrive as their literal text. */
const column = v.object({ name: v.string(), typeoid: v.string(), value: v.union(v.string(), v.boolean(), v.null()) });
type Wal2JsonColumn = v.Infer<typeof column>;

const wal2JsonMessage = v.union(
  v.object({ action: v.literal('B'), xid: v.string(), timestamp: v.string(), lsn: v.string(), nextlsn: v.string() }),
  v.object({ action: v.literal('C'), nextlsn: v.string() }),
  v.object({
    action: v.union(v.literal('I'), v.literal('U'), v.literal('D')),
    schema: v.string(),
    table: v.string(),
    columns: v.array(column).optional(),
    identity: v.array(column).optional(),
  }),
  v.object({ action: v.literal('M'), transactional: v.boolean(), prefix: v.string(), content: v.string() }),
  v.object({ action: v.literal('T'), schema: v.string(), table: v.string() }),
);

export class Wal2JsonDecoder implements StreamDecoder<string> {
  private readonly cursor = new TransactionCursor();
  /** Each table's columns as its last insert or update sent them. */
  private readonly sentColumns = new Map<SourceTable, { name: string; typeOid: number }[]>();

  /** True between BEGIN and COMMIT. */
  get inTransaction(): boolean {
    return this.cursor.inTransaction;
  }

  nextSource(): EventSource {
    return this.cursor.nextSource();
  }

  /** One wal2json message, as its raw text (numbers are parsed here, keeping every digit). */
  decode(text: string): Decoded[] {
    const msg = check(
      wal2JsonMessage,
      JSON.parse(quoteNumbers(text)),
      (problem) => new Error(`unexpected wal2json message: ${problem}: ${text.slice(0, 200)}`),
    );
    switch (msg.action) {
      case 'B':
        this.cursor.begin(paddedLsn(msg.lsn), Number(msg.xid), timestamptzToIso(msg.timestamp));
        return [{ type: 'begin' }];
      case 'C':
        this.cursor.commit();
        return [{ type: 'commit', endLsn: paddedLsn(msg.nextlsn) }];
      case 'I':
        return this.change(msg.schema, msg.table, 'c', null, msg.columns ?? null);
      case 'U':
        return this.change(msg.schema, msg.table, 'u', msg.identity ?? null, msg.columns ?? null);
      case 'D':
        return this.change(msg.schema, msg.table, 'd', msg.identity ?? null, null);
      case 'M':
        return msg.transactional ? signal(this.cursor, { kind: msg.prefix, content: msg.content }) : [];
      case 'T': // one message per truncated table, as pgoutput lists them
        return msg.schema === 'public' && isSourceTable(msg.table) && this.cursor.inTransaction ? [truncated(this.cursor, msg.table)] : [];
    }
  }

  private change(schema: string, name: string, op: Op, identity: Wal2JsonColumn[] | null, columns: Wal2JsonColumn[] | null): Decoded[] {
    if (isSignalTable(schema, name)) {
      const written = columns && signalFromRow(toRow(columns));
      return written ? signal(this.cursor, written) : [];
    }
    if (schema !== 'public' || !isSourceTable(name) || !this.cursor.inTransaction) return [];
    const after = columns ? toRow(columns) : null;
    // wal2json leaves unchanged TOASTed values out of an update's columns
    const unchanged = op === 'u' && after ? SOURCE_TABLES[name].filter((c) => !(c in after)) : [];
    // wal2json sends an update's identity even when the key did not change (taken from the new
    // row); pgoutput sends the old key only when it changed, and that is what `before` means
    const oldKey = identity ? toRow(identity) : null;
    const keyUnchanged = op === 'u' && oldKey !== null && after !== null && Object.keys(oldKey).every((c) => oldKey[c] === after[c]);
    const decoded = rowChange(this.cursor, name, op, keyUnchanged ? null : oldKey, after, unchanged);
    const columnsNow = columns && this.schemaChange(name, columns, unchanged);
    if (columnsNow) decoded.unshift(columnsNow);
    return decoded;
  }

  /**
   * A 'schema' item, as pgoutput's relation message makes one, when the columns a change sends
   * differ from the last its table sent: each with its type oid, and those an update left out
   * with UNSENT_TYPE (an unchanged TOASTed value, or a dropped column: SchemaWatch tells which).
   */
  private schemaChange(table: SourceTable, columns: Wal2JsonColumn[], unsent: string[]): Decoded | null {
    const last = this.sentColumns.get(table);
    const same =
      last?.length === columns.length + unsent.length &&
      columns.every((c, i) => last[i].name === c.name && last[i].typeOid === Number(c.typeoid)) &&
      unsent.every((name, i) => last[columns.length + i].name === name);
    if (same) return null;
    const now = [...columns.map((c) => ({ name: c.name, typeOid: Number(c.typeoid) })), ...unsent.map((name) => ({ name, typeOid: UNSENT_TYPE }))];
    this.sentColumns.set(table, now);
    return { type: 'schema', table, columns: now };
  }
}

function toRow(columns: Wal2JsonColumn[]): Row {
  const row: Row = {};
  for (const { name, typeoid, value } of columns) {
    if (value === null) row[name] = null;
    else row[name] = pg.types.getTypeParser(Number(typeoid), 'text')(typeof value === 'boolean' ? (value ? 't' : 'f') : value) as Value;
  }
  return row;
}

/** "0/19A21B0" as pg-logical-replication prints pgoutput's LSNs: "00000000/019A21B0". */
function paddedLsn(lsn: string): string {
  const [hi, lo] = lsn.split('/');
  return `${hi.padStart(8, '0')}/${lo.padStart(8, '0')}`;
}

const DIGIT_OR_MINUS = /[-0-9]/;
const NUMBER_TAIL = /[-+0-9.eE]*/y;

/**
 * The JSON text with every bare number turned into a string holding its literal, so
 * 99999999.99 and 0.10 reach us digit for digit. Strings are copied untouched.
 */
function quoteNumbers(json: string): string {
  const out: string[] = [];
  let copied = 0;
  for (let i = 0; i < json.length; i++) {
    const ch = json[i];
    if (ch === '"') {
      for (i++; i < json.length && json[i] !== '"'; i++) if (json[i] === '\\') i++;
    } else if (DIGIT_OR_MINUS.test(ch)) {
      NUMBER_TAIL.lastIndex = i + 1;
      NUMBER_TAIL.exec(json);
      out.push(json.slice(copied, i), '"', json.slice(i, NUMBER_TAIL.lastIndex), '"');
      copied = NUMBER_TAIL.lastIndex;
      i = copied - 1;
    }
  }
  out.push(json.slice(copied));
  return out.join('');
}

const TIMESTAMPTZ = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$/;

/**
 * A timestamptz as wal2json prints it ("2024-05-01 10:15:02.456789+01", in the server's
 * TimeZone, trailing zeros of the fraction dropped) → ISO 8601 UTC with microseconds.
 */
function timestamptzToIso(text: string): string {
  const m = TIMESTAMPTZ.exec(text);
  if (!m) throw new Error(`unexpected wal2json timestamp ${JSON.stringify(text)}`);
  const [, y, mo, d, h, mi, s, fraction = '', sign, oh, om = '0', os = '0'] = m;
  const offsetMs = (sign === '-' ? -1 : 1) * ((Number(oh) * 60 + Number(om)) * 60 + Number(os)) * 1000;
  const utcMs = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) - offsetMs;
  return microsToIso(BigInt(utcMs) * 1000n + BigInt(fraction.padEnd(6, '0')));
}
