/**
 * Signals written into the source's WAL by us, not by the business: heartbeats (the freshness
 * watermark) and capture's own markers (snapshot watermarks). They cross stages: capture
 * decodes them, `totes verify` writes a heartbeat to learn when the warehouse has caught up
 * with a point in the source.
 *
 * Two carriers, chosen from the server's version (never a setting):
 * - Postgres 14+: a transactional logical message (pg_logical_emit_message), which pgoutput
 *   decodes from 14 on;
 * - Postgres 13: a row of SIGNAL_TABLE, which is in the publication. Each writer keeps one row
 *   and overwrites it (INSERT … ON CONFLICT DO UPDATE), so the table never grows: pgoutput
 *   sends the whole new row (an update of a table whose replica identity is its primary key
 *   carries every column), and the decoders turn it into a signal, never a change event.
 */

/** Every signal of ours starts with this; messages with other prefixes are not ours. */
export const MESSAGE_PREFIX = 'totes-cdc/';
/** A heartbeat: once it is through the pipeline, everything committed before it is too. */
export const HEARTBEAT_PREFIX = `${MESSAGE_PREFIX}heartbeat`;

/** The table that carries signals where logical messages are not decoded (Postgres 13). */
export const SIGNAL_TABLE = { schema: 'totes_cdc', name: 'signal' } as const;
export const SIGNAL_TABLE_NAME = `${SIGNAL_TABLE.schema}.${SIGNAL_TABLE.name}`;

/** `writer`: who wrote it (a capture's slot name, or `verify`); `kind`: the signal's prefix; `content`: its payload. */
export const SIGNAL_TABLE_DDL = `CREATE TABLE IF NOT EXISTS ${SIGNAL_TABLE_NAME} (
  writer text PRIMARY KEY, kind text NOT NULL, content text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())`;

export type SignalCarrier = 'message' | 'table';

/** The first server_version_num whose pgoutput decodes logical messages. */
const MESSAGES_DECODED_FROM = 140_000;

export function signalCarrier(serverVersionNum: number): SignalCarrier {
  return serverVersionNum >= MESSAGES_DECODED_FROM ? 'message' : 'table';
}

export interface Signal {
  kind: string;
  content: string;
}

/**
 * The statement that writes `signal` by `carrier`. It returns `lsn`: a WAL position at or before
 * the signal's commit, so a watermark at or past it has passed the signal.
 */
export function signalStatement(carrier: SignalCarrier, writer: string, signal: Signal): { text: string; values: string[] } {
  if (carrier === 'message') return { text: `SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn`, values: [signal.kind, signal.content] };
  return {
    text: `INSERT INTO ${SIGNAL_TABLE_NAME} (writer, kind, content) VALUES ($1, $2, $3)
           ON CONFLICT (writer) DO UPDATE SET kind = excluded.kind, content = excluded.content, written_at = now()
           RETURNING pg_current_wal_insert_lsn()::text AS lsn`,
    values: [writer, signal.kind, signal.content],
  };
}

/** A decoded row of SIGNAL_TABLE as a signal (null when it is not one of ours). */
export function signalFromRow(row: Record<string, unknown>): Signal | null {
  const { kind, content } = row;
  if (typeof kind !== 'string' || !kind.startsWith(MESSAGE_PREFIX) || typeof content !== 'string') return null;
  return { kind, content };
}
