/**
 * What both decoders (pgoutput, wal2json) share: the items they yield, the transaction cursor
 * that gives each event its (commit LSN, position), the split of a key change into a delete
 * and an insert, and our signals, whether they came as a logical message or a signal-table row.
 * Pure: no I/O.
 */
import type { ChangeEvent, EventSource, HeartbeatEvent, Op, Row, TruncateEvent, Value } from '../formats/change-event.ts';
import { HEARTBEAT_PREFIX, MESSAGE_PREFIX, SIGNAL_TABLE, type Signal } from '../formats/source-signals.ts';
import { primaryKeyOf, type SourceTable } from '../formats/source-tables.ts';
import type { Pgoutput } from 'pg-logical-replication';

export type Decoded =
  | { type: 'change'; event: ChangeEvent }
  | { type: 'heartbeat'; event: HeartbeatEvent }
  | { type: 'truncate'; event: TruncateEvent }
  | { type: 'begin' }
  | { type: 'commit'; endLsn: string }
  | { type: 'schema'; table: SourceTable; columns: { name: string; typeOid: number }[] }
  /** A signal of ours other than a heartbeat (snapshot watermarks). */
  | { type: 'signal'; kind: string; content: string };

/** One truncated table, at the next position of the transaction; both decoders make the same. */
export function truncated(cursor: TransactionCursor, table: SourceTable): Decoded {
  return { type: 'truncate', event: { v: 1, kind: 'truncate', table, source: cursor.nextSource() } };
}

/** Microseconds since the Unix epoch → ISO 8601 with microseconds. */
export function microsToIso(micros: bigint): string {
  const iso = new Date(Number(micros / 1000n)).toISOString();
  return `${iso.slice(0, 23)}${String(micros % 1000n).padStart(3, '0')}Z`;
}

/** The transaction being decoded: BEGIN already carries the commit LSN, so events are built as they arrive. */
export class TransactionCursor {
  private tx: { lsn: string; xid: number; commitTime: string; pos: number } | null = null;

  begin(lsn: string, xid: number, commitTime: string): void {
    this.tx = { lsn, xid, commitTime, pos: 0 };
  }

  commit(): void {
    this.tx = null;
  }

  /** True between BEGIN and COMMIT. */
  get inTransaction(): boolean {
    return this.tx !== null;
  }

  /** The next (commit LSN, position) in the current transaction. */
  nextSource(): EventSource {
    const tx = this.tx!;
    return { lsn: tx.lsn, pos: tx.pos++, xid: tx.xid, commitTime: tx.commitTime };
  }
}

/**
 * The events of one row change. An update that changes the primary key becomes a delete of the
 * old key and an insert of the new one: each key's events are partitioned by that key, so each
 * stays in order on its own shard (an update carrying both keys could only be in order on one).
 * `before` is the old key, only when it changed; `unchanged` the unchanged TOASTed columns.
 *
 * An unchanged TOASTed value of a key change is the old key's: the insert takes it from the old
 * tuple when that holds it (REPLICA IDENTITY FULL); under the default identity the old tuple is
 * the key alone, so both halves name the other key (`movedFrom`, `movedTo`) and the loader
 * carries the value across from the old key's version.
 */
export function rowChange(cursor: TransactionCursor, table: SourceTable, op: Op, before: Row | null, after: Row | null, unchanged: string[] = []): Decoded[] {
  const pk = primaryKeyOf(table);
  const event = (
    op: Op,
    key: Value,
    before: Row | null,
    after: Row | null,
    unchanged: string[],
    moved: Pick<ChangeEvent, 'movedFrom' | 'movedTo'> = {},
  ): Decoded => ({
    type: 'change',
    event: {
      v: 1,
      kind: 'change',
      op,
      table,
      key: { [pk]: key },
      before,
      after,
      ...(after && unchanged.length > 0 ? { unchanged } : {}),
      ...moved,
      source: cursor.nextSource(),
    },
  });
  if (op === 'u' && before?.[pk] != null && before[pk] !== after?.[pk]) {
    const held = unchanged.filter((c) => Object.hasOwn(before, c));
    const inserted = held.length > 0 ? { ...after, ...Object.fromEntries(held.map((c) => [c, before[c]])) } : after!;
    const left = unchanged.filter((c) => !Object.hasOwn(before, c));
    const [from, to] = [{ [pk]: before[pk] }, { [pk]: after![pk] }];
    return [
      event('d', before[pk], before, null, [], left.length > 0 ? { movedTo: to } : {}),
      event('c', after![pk], null, inserted, left, left.length > 0 ? { movedFrom: from } : {}),
    ];
  }
  return [event(op, (after ?? before)?.[pk] ?? null, before, after, unchanged)];
}

/** One of our signals, inside a transaction: a heartbeat event at its position, or a marker for the snapshot. */
export function signal(cursor: TransactionCursor, { kind, content }: Signal): Decoded[] {
  if (!cursor.inTransaction || !kind.startsWith(MESSAGE_PREFIX)) return [];
  if (kind === HEARTBEAT_PREFIX) return [{ type: 'heartbeat', event: { v: 1, kind: 'heartbeat', source: cursor.nextSource() } }];
  return [{ type: 'signal', kind, content }];
}

export function isSignalTable(schema: string, name: string): boolean {
  return schema === SIGNAL_TABLE.schema && name === SIGNAL_TABLE.name;
}

/** What a format parses a payload into: pgoutput's messages, wal2json's text. */
export type StreamMessage = Pgoutput.Message | string;

/** A decoder takes what its format parses (M); a StreamFormat (stream-format.ts) pairs the two. */
export interface StreamDecoder<M extends StreamMessage = StreamMessage> {
  decode(msg: M): Decoded[];
  readonly inTransaction: boolean;
  nextSource(): EventSource;
}
