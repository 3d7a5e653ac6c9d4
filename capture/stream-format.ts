/**
 * The logical decoding plugin a slot streams with: the START_REPLICATION statement for it on
 * this server, how its payloads are parsed, and the decoder that turns them into events.
 */
import { PgoutputPlugin } from 'pg-logical-replication';
import type { SignalCarrier } from '../formats/source-signals.ts';
import type { StreamDecoder, StreamMessage } from './decoding.ts';
import { PgoutputDecoder } from './pgoutput-decoder.ts';
import { WAL2JSON_OPTIONS, Wal2JsonDecoder } from './wal2json-decoder.ts';

export type Plugin = 'pgoutput' | 'wal2json';

export interface StreamFormat<M extends StreamMessage = StreamMessage> {
  /** START_REPLICATION for `slot`, from where the slot was confirmed. */
  statement(slot: string): string;
  parse(payload: Buffer): M;
  decoder: StreamDecoder<M>;
}

const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;
const identifier = (s: string) => `"${s.replaceAll('"', '""')}"`;
const start = (slot: string, options: string[]) => `START_REPLICATION SLOT ${identifier(slot)} LOGICAL 0/0 (${options.join(', ')})`;

/**
 * `carrier` says how our signals travel on this server: pgoutput takes the `messages` option
 * only from Postgres 14, where it also decodes them; on 13 the option is refused and signals
 * come as signal-table rows, which the publication carries anyway.
 */
export function streamFormat(plugin: Plugin, publication: string, carrier: SignalCarrier): StreamFormat {
  if (plugin === 'wal2json') {
    const options = Object.entries(WAL2JSON_OPTIONS).map(
      ([key, value]) =>
        `${identifier(key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`))} ${literal(typeof value === 'string' ? value : value ? 'on' : 'off')}`,
    );
    return { statement: (slot) => start(slot, options), parse: (payload) => payload.toString('utf8'), decoder: new Wal2JsonDecoder() };
  }
  const parser = new PgoutputPlugin({ protoVersion: 1, publicationNames: [publication] });
  const options = [`proto_version '1'`, `publication_names ${literal(identifier(publication))}`, ...(carrier === 'message' ? [`messages 'true'`] : [])];
  return { statement: (slot) => start(slot, options), parse: (payload) => parser.parse(payload), decoder: new PgoutputDecoder() };
}
