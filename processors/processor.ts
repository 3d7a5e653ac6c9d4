/**
 * The processor: a Kinesis-triggered Lambda handler (the real event shape and
 * ReportBatchItemFailures), also driven locally by the Kinesis poller with the same events.
 *
 * A record that cannot be decoded or mapped (a malformed event, a value the warehouse cannot
 * hold: data-model.md in the README) goes to the dead-letter prefix with its reason, the row,
 * column and value at fault, and its payload, and the rest of the batch proceeds. If S3 cannot be written, the whole batch is
 * reported failed from its first record and retried: names are deterministic, so a retry
 * never makes a second copy, and the loader loads each change once however often it is written.
 */
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { decodeEvent, InvalidEventError, recordLines, lsnToBigInt, type ChangeEvent, type RowsEndEvent } from '../formats/change-event.ts';
import { log } from '../lib/log.ts';
import type { MetricLine } from '../lib/metrics.ts';
import { resolvePointer } from '../stores/oversize-store.ts';
import { encodeParquet } from '../formats/parquet.ts';
import type { Manifest, SetAside } from '../formats/manifest.ts';
import { isSourceTable, primaryKeyOf } from '../formats/source-tables.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import type { BatchChain } from './batch-chain.ts';
import { mapEvents } from './transform.ts';
import type { LoadTableName } from '../formats/load-tables.ts';

export interface ProcessorMetrics {
  batches: number;
  events: number;
  rows: number;
  deadLetters: number;
  /** Batches that failed and were reported for retry (S3 down, anything not about one record): Lambda counts them as successes. */
  batchFailures: number;
}

/** One interval's metrics line, the same from the Lambda and the local service: the growth of the counts since `before`. */
export function processorMetrics(now: ProcessorMetrics, before: ProcessorMetrics): MetricLine<'processor'> {
  return {
    Events: now.events - before.events,
    DeadLetters: now.deadLetters - before.deadLetters,
    BatchFailures: now.batchFailures - before.batchFailures,
  };
}

/** A dead letter as the operator sees it where they look (health, status line): its row and reason, no value (it may be personal data). */
export interface DeadLetterNote {
  table: string | null;
  key: number | null;
  column: string | null;
  reason: string;
}
const NEWEST_DEAD_LETTERS = 5;

/** A reason without the value it quotes: quoted text withheld, and a JSON parser's message (which quotes the payload) left out. */
export function reasonWithoutValues(reason: string): string {
  return reason.replace(/not JSON: .*/s, 'not JSON').replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '…');
}

export class Processor {
  readonly metrics: ProcessorMetrics = { batches: 0, events: 0, rows: 0, deadLetters: 0, batchFailures: 0 };
  /** Newest first. */
  readonly newestDeadLetters: DeadLetterNote[] = [];
  private lastBatchFailed = false;
  constructor(
    private readonly store: MicroBatchStore,
    private readonly chain: BatchChain | null = null,
  ) {}

  readonly handler = async (event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> => {
    const records = event.Records;
    if (records.length === 0) return { batchItemFailures: [] };
    const shard = records[0].eventID.split(':')[0];
    const first = records[0].kinesis.sequenceNumber;
    const last = records[records.length - 1].kinesis.sequenceNumber;
    try {
      await this.process(
        shard,
        first,
        last,
        records.map((r) => ({ seq: r.kinesis.sequenceNumber, data: r.kinesis.data })),
      );
      this.lastBatchFailed = false;
      return { batchItemFailures: [] };
    } catch (err) {
      this.metrics.batchFailures++;
      this.lastBatchFailed = true;
      log.error({ err: (err as Error).message, shard, first, last }, 'batch failed; reporting it for retry');
      return { batchItemFailures: [{ itemIdentifier: first }] };
    }
  };

  private async process(shard: string, first: string, last: string, records: { seq: string; data: string }[]): Promise<void> {
    const batchId = MicroBatchStore.batchId(shard, first, last);
    const follows = this.chain?.follows(shard, first) ?? Promise.resolve(null);
    const changes: (ChangeEvent | RowsEndEvent)[] = [];
    const seqOf = new Map<ChangeEvent | RowsEndEvent, string>();
    let heartbeat: Manifest['heartbeat'] = null;
    let maxCommitTime: string | null = null;
    const dead = new DeadLetters();
    let events = 0;
    for (const r of records) {
      const payload = Buffer.from(r.data, 'base64').toString('utf8');
      // a record is one event or a bundle of one row's changes: each line is decoded, and set aside, on its own
      const lines = recordLines(payload);
      events += lines.length;
      for (const [i, line] of lines.entries()) {
        try {
          const decoded = decodeEvent(line);
          const e = decoded.kind === 'pointer' ? await resolvePointer(this.store.s3, decoded) : decoded;
          if (e.kind === 'heartbeat') {
            if (!heartbeat || lsnToBigInt(e.source.lsn) > lsnToBigInt(heartbeat.lsn)) heartbeat = { lsn: e.source.lsn, commitTime: e.source.commitTime };
          } else {
            changes.push(e);
            seqOf.set(e, r.seq);
          }
          if (!maxCommitTime || e.source.commitTime > maxCommitTime) maxCommitTime = e.source.commitTime;
        } catch (err) {
          if (!(err instanceof InvalidEventError)) throw err;
          const reason = lines.length > 1 ? `event ${i + 1} of ${lines.length}: ${err.message}` : err.message;
          dead.add(r.seq, line, { ...namedRow(line), column: null, value: null, reason });
        }
      }
    }
    const { rows, ends, failures } = mapEvents(changes);
    for (const { event, reason, column, value } of failures) {
      dead.add(seqOf.get(event)!, JSON.stringify(event), { table: event.table, key: event.key[primaryKeyOf(event.table)] as number, column, value, reason });
    }
    // Every object of the batch is put at once (each table's put starts while the next is encoded);
    // the manifest still goes last, once all of them are there.
    const puts: Promise<void>[] = [];
    for (const d of dead.list()) {
      log.warn({ shard, sequenceNumber: d.seq, reason: d.reason }, 'dead letter');
      puts.push(
        this.store.writeDeadLetter({ shard, sequenceNumber: d.seq, reason: d.reason, payload: d.payload, setAside: d.setAside, at: new Date().toISOString() }),
      );
    }
    const tables: Manifest['tables'] = [];
    for (const [table, tableRows] of Object.entries(rows) as [LoadTableName, NonNullable<(typeof rows)[LoadTableName]>][]) {
      const key = this.store.tableKey(batchId, table);
      puts.push(this.store.putOnce(key, encodeParquet(table, tableRows), 'application/vnd.apache.parquet'));
      tables.push({ table, key, rows: tableRows.length });
    }
    await settleAll(puts);
    await this.store.writeManifest({
      batchId,
      shard,
      firstSequence: first,
      lastSequence: last,
      follows: await follows,
      events,
      tables,
      heartbeat,
      ends,
      maxCommitTime,
      deadLetters: dead.count,
    });
    this.chain?.wrote(shard, last);
    this.metrics.batches++;
    this.metrics.events += events;
    this.metrics.rows += tables.reduce((n, t) => n + t.rows, 0);
    this.metrics.deadLetters += dead.count;
    for (const { setAside } of dead.list())
      for (const { table, key, column, reason } of setAside) this.newestDeadLetters.unshift({ table, key, column, reason: reasonWithoutValues(reason) });
    this.newestDeadLetters.splice(NEWEST_DEAD_LETTERS);
  }

  /** What /health answers: unhealthy only while the last batch failed (dead letters are reported, not a fault of the processor). */
  get health(): { healthy: boolean; newestDeadLetters: DeadLetterNote[] } & ProcessorMetrics {
    return { healthy: !this.lastBatchFailed, ...this.metrics, newestDeadLetters: this.newestDeadLetters };
  }
}

/**
 * Dead letters, one per record (named by its sequence number): the events of a bundle that were
 * set aside go in its one dead letter, each in order.
 */
class DeadLetters {
  private bySeq = new Map<string, { setAside: SetAside[]; payloads: string[] }>();
  count = 0;

  add(seq: string, payload: string, setAside: SetAside): void {
    const d = this.bySeq.get(seq) ?? { setAside: [], payloads: [] };
    this.bySeq.set(seq, d);
    d.setAside.push(setAside);
    d.payloads.push(payload.endsWith('\n') ? payload.slice(0, -1) : payload);
    this.count++;
  }

  list(): { seq: string; reason: string; payload: string; setAside: SetAside[] }[] {
    return [...this.bySeq].map(([seq, d]) => ({
      seq,
      reason: d.setAside.map((s) => s.reason).join('; '),
      payload: d.payloads.join('\n'),
      setAside: d.setAside,
    }));
  }
}

/** The table and key a malformed event names, where it names them. */
function namedRow(line: string): Pick<SetAside, 'table' | 'key'> {
  try {
    const raw = JSON.parse(line);
    const table = typeof raw?.table === 'string' ? raw.table : null;
    const key = table && isSourceTable(table) ? raw.key?.[primaryKeyOf(table)] : null;
    return { table, key: Number.isInteger(key) ? key : null };
  } catch {
    return { table: null, key: null };
  }
}

/** Waits for every promise, then throws the first failure: no put is left running when the batch fails. */
async function settleAll(promises: Promise<void>[]): Promise<void> {
  for (const r of await Promise.allSettled(promises)) if (r.status === 'rejected') throw r.reason;
}
