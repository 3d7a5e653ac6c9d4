/**
 * wal2json for LogicalReplicationService, handing each message on as its raw text: the
 * library's Wal2JsonPlugin JSON.parses it, which turns a numeric 99999999.99 into a float and
 * loses digits. Wal2JsonDecoder parses the text keeping every number's literal.
 *
 *   new Wal2JsonTextPlugin(WAL2JSON_OPTIONS)   // options from wal2json-decoder.ts
 */
import { Wal2JsonPlugin } from 'pg-logical-replication';

export class Wal2JsonTextPlugin extends Wal2JsonPlugin {
  override parse(buffer: Buffer): string {
    return buffer.toString('utf8');
  }
}
