/**
 * Turns pgoutput protocol messages into change events. Pure: no I/O. Events are built as
 * their messages arrive (the commit LSN is already in BEGIN), so a transaction is never held
 * in memory whole.
 */
import type { Pgoutput } from 'pg-logical-replication';
import type { ChangeEvent, HeartbeatEvent, Op, Row, TruncateEvent, Value } from '../formats/change-event.ts';
import { isSourceTable, primaryKeyOf, type SourceTable } from '../formats/source-tables.ts';
import { HEARTBEAT_PREFIX, MESSAGE_PREFIX } from '../formats/source-signals.ts';

export type Decoded =
  | { type: 'change'; event: ChangeEvent }
  | { type: 'heartbeat'; event: HeartbeatEvent }
  | { type: 'truncate'; event: TruncateEvent }
  | { type: 'begin' }
  | { type: 'commit'; endLsn: string }
  | { type: 'schema'; table: SourceTable; columns: { name: string; typeOid: number }[] }
  /** A transactional message of ours other than a heartbeat (snapshot watermarks). */
  | { type: 'message'; prefix: string; content: string };

/** Microseconds since the Unix epoch → ISO 8601 with microseconds. */
export function microsToIso(micros: bigint): string {
  const iso = new Date(Number(micros / 1000n)).toISOString();
  return `${iso.slice(0, 23)}${String(micros % 1000n).padStart(3, '0')}Z`;
}

export class PgoutputDecoder {
  private tx: { lsn: string; xid: number; commitTime: string; pos: number } | null = null;
  private readonly knownColumns = new Map<string, string>();

  /** True between BEGIN and COMMIT. */
  get inTransaction(): boolean {
    return this.tx !== null;
  }

  decode(msg: Pgoutput.Message): Decoded[] {
    switch (msg.tag) {
      case 'begin':
        this.tx = { lsn: msg.commitLsn ?? '0/0', xid: msg.xid, commitTime: microsToIso(msg.commitTime as bigint), pos: 0 };
        return [{ type: 'begin' }];
      case 'commit': {
        this.tx = null;
        return [{ type: 'commit', endLsn: msg.commitEndLsn ?? msg.commitLsn ?? '0/0' }];
      }
      case 'relation': {
        if (msg.schema !== 'public' || !isSourceTable(msg.name)) return [];
        const columns = msg.columns.map((c) => ({ name: c.name, typeOid: c.typeOid }));
        const signature = columns.map((c) => `${c.name}:${c.typeOid}`).join(',');
        if (this.knownColumns.get(msg.name) === signature) return [];
        this.knownColumns.set(msg.name, signature);
        return [{ type: 'schema', table: msg.name, columns }];
      }
      case 'insert':
        return this.change(msg.relation, 'c', null, msg.new);
      case 'update':
        return this.change(msg.relation, 'u', msg.key ?? msg.old, msg.new);
      case 'delete':
        return this.change(msg.relation, 'd', msg.key ?? msg.old, null);
      case 'message': {
        if (!this.tx || !msg.prefix.startsWith(MESSAGE_PREFIX)) return [];
        if (msg.prefix === HEARTBEAT_PREFIX) return [{ type: 'heartbeat', event: { v: 1, kind: 'heartbeat', source: this.nextSource() } }];
        return [{ type: 'message', prefix: msg.prefix, content: Buffer.from(msg.content).toString('utf8') }];
      }
      case 'truncate': {
        // CASCADE arrives as the tables it reached; RESTART IDENTITY changes nothing downstream (keys come from the source)
        const tables = msg.relations.filter((r) => r.schema === 'public' && isSourceTable(r.name)).map((r) => r.name as SourceTable);
        return this.tx ? tables.map((table) => truncated(table, this.nextSource())) : [];
      }
      default:
        return []; // origin, type: nothing to carry
    }
  }

  /** The next (commit LSN, position) in the current transaction. */
  nextSource() {
    const tx = this.tx!;
    return { lsn: tx.lsn, pos: tx.pos++, xid: tx.xid, commitTime: tx.commitTime };
  }

  /**
   * An update that changes the primary key becomes a delete of the old key and an insert of the
   * new one: each key's events are partitioned by that key, so each stays in order on its own
   * shard (an update carrying both keys could only be in order on one of them).
   */
  private change(rel: Pgoutput.MessageRelation, op: Op, old: Record<string, unknown> | null, tuple: Record<string, unknown> | null): Decoded[] {
    if (rel.schema !== 'public' || !isSourceTable(rel.name) || !this.tx) return [];
    const table = rel.name;
    const pk = primaryKeyOf(table);
    let after: Row | null = null;
    let unchanged: string[] | undefined;
    if (tuple) {
      after = {};
      for (const name of Object.keys(tuple)) {
        const value = tuple[name];
        // pgoutput's 'u' (unchanged TOAST datum) reaches us as undefined: never confuse it with NULL
        if (value === undefined) (unchanged ??= []).push(name);
        else after[name] = value as Value;
      }
    }
    const before = old ? cleanKey(old) : null;
    const event = (op: Op, key: Value, before: Row | null, after: Row | null): Decoded => ({
      type: 'change',
      event: { v: 1, kind: 'change', op, table, key: { [pk]: key }, before, after, ...(after && unchanged ? { unchanged } : {}), source: this.nextSource() },
    });
    if (op === 'u' && before?.[pk] != null && before[pk] !== after?.[pk]) {
      return [event('d', before[pk], before, null), event('c', after![pk], null, after)];
    }
    return [event(op, (after ?? before)?.[pk] ?? null, before, after)];
  }
}

/** One truncated table; the wal2json decoder makes the same. */
export function truncated(table: SourceTable, source: TruncateEvent['source']): Decoded {
  return { type: 'truncate', event: { v: 1, kind: 'truncate', table, source } };
}

function cleanKey(old: Record<string, unknown>): Row {
  const row: Row = {};
  for (const [k, v] of Object.entries(old)) if (v !== undefined) row[k] = v as Value;
  return row;
}
