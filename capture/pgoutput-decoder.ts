/**
 * Turns pgoutput protocol messages into change events. Pure: no I/O. Events are built as
 * their messages arrive (the commit LSN is already in BEGIN), so a transaction is never held
 * in memory whole. Our signals arrive as logical messages (Postgres 14+) or as rows of the
 * signal table (Postgres 13); both become the same items.
 */
import type { Pgoutput } from 'pg-logical-replication';
import type { EventSource, Op, Row, Value } from '../formats/change-event.ts';
import { signalFromRow } from '../formats/source-signals.ts';
import { isSourceTable, type SourceTable } from '../formats/source-tables.ts';
import { type Decoded, isSignalTable, microsToIso, rowChange, signal, TransactionCursor, truncated } from './decoding.ts';
import type { StreamDecoder } from './decoding.ts';

export class PgoutputDecoder implements StreamDecoder<Pgoutput.Message> {
  private readonly cursor = new TransactionCursor();
  private readonly knownColumns = new Map<string, string>();

  /** True between BEGIN and COMMIT. */
  get inTransaction(): boolean {
    return this.cursor.inTransaction;
  }

  nextSource(): EventSource {
    return this.cursor.nextSource();
  }

  decode(msg: Pgoutput.Message): Decoded[] {
    switch (msg.tag) {
      case 'begin':
        this.cursor.begin(msg.commitLsn ?? '0/0', msg.xid, microsToIso(msg.commitTime as bigint));
        return [{ type: 'begin' }];
      case 'commit':
        this.cursor.commit();
        return [{ type: 'commit', endLsn: msg.commitEndLsn ?? msg.commitLsn ?? '0/0' }];
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
      case 'message':
        return signal(this.cursor, { kind: msg.prefix, content: Buffer.from(msg.content).toString('utf8') });
      case 'truncate': {
        // CASCADE arrives as the tables it reached; RESTART IDENTITY changes nothing downstream (keys come from the source)
        if (!this.cursor.inTransaction) return [];
        const tables = msg.relations.filter((r) => r.schema === 'public' && isSourceTable(r.name)).map((r) => r.name as SourceTable);
        return tables.map((table) => truncated(this.cursor, table));
      }
      default:
        return []; // origin, type: nothing to carry
    }
  }

  private change(rel: Pgoutput.MessageRelation, op: Op, old: Record<string, unknown> | null, tuple: Record<string, unknown> | null): Decoded[] {
    if (isSignalTable(rel.schema, rel.name)) {
      const written = tuple && signalFromRow(tuple); // a signal row's delete carries nothing
      return written ? signal(this.cursor, written) : [];
    }
    if (rel.schema !== 'public' || !isSourceTable(rel.name) || !this.cursor.inTransaction) return [];
    let after: Row | null = null;
    const unchanged: string[] = [];
    if (tuple) {
      after = {};
      for (const name of Object.keys(tuple)) {
        const value = tuple[name];
        // pgoutput's 'u' (unchanged TOAST datum) reaches us as undefined: never confuse it with NULL
        if (value === undefined) unchanged.push(name);
        else after[name] = value as Value;
      }
    }
    return rowChange(this.cursor, rel.name, op, old ? definedValues(old) : null, after, unchanged);
  }
}

function definedValues(old: Record<string, unknown>): Row {
  const row: Row = {};
  for (const [k, v] of Object.entries(old)) if (v !== undefined) row[k] = v as Value;
  return row;
}
