/**
 * The capture service's CloudWatch metrics (EMF), one line a minute. Slot health comes from a
 * query on the source over a connection of its own, opened for that query and bounded in time;
 * when it fails or does not answer in time the line still goes out, with SourceUnreachable = 1
 * and no slot figures (unknown is not zero), so the alarms see a failing source instead of
 * silence. A connection of its own per minute: one stuck on a silent network cannot hold up
 * the next minute's reading.
 */
import { log } from '../lib/log.ts';
import { emitMetrics, type MetricLine } from '../lib/metrics.ts';
import pg, { connectionConfig } from '../lib/pg.ts';
import type { CaptureService } from './capture-service.ts';
import type { KinesisSink } from './kinesis-sink.ts';
import { readSlotHealth, type SlotHealth } from './slot-health.ts';

/** SlotWalStatus: pg_replication_slots.wal_status as a number, so an alarm can see it leave `reserved`. */
export const WAL_STATUS_CODE: Record<string, number> = { reserved: 0, extended: 1, unreserved: 2, lost: 3, missing: 4 };

const SLOT_QUERY_TIMEOUT_MS = 10_000;

type Metrics = MetricLine<'capture'>;

export interface Counters {
  at: number;
  changes: number;
  bytes: number;
  retries: number;
}

/** One interval's metrics. `slot` is null when the source could not be queried. */
export function captureMetrics(o: {
  slot: SlotHealth | null;
  lagSeconds: number | null;
  schemaIssues: number;
  putLatencyMs: number;
  now: Counters;
  last: Counters;
}): Metrics {
  const secs = Math.max((o.now.at - o.last.at) / 1000, 0.001);
  return {
    ChangesPerSecond: (o.now.changes - o.last.changes) / secs,
    BytesPerSecond: (o.now.bytes - o.last.bytes) / secs,
    PutRecordsRetries: o.now.retries - o.last.retries,
    PutRecordsLatency: o.putLatencyMs,
    SchemaIssues: o.schemaIssues,
    SourceUnreachable: o.slot ? 0 : 1,
    SlotLagSeconds: o.lagSeconds,
    SlotLagBytes: o.slot?.lagBytes ?? null,
    SafeWalSizeBytes: o.slot ? (o.slot.safeWalSize ?? -1) : null,
    SlotWalStatus: o.slot && o.slot.walStatus in WAL_STATUS_CODE ? WAL_STATUS_CODE[o.slot.walStatus] : null,
  };
}

/** Reads slot health and emits a service's metrics line; `emit` never throws. */
export class CaptureMetrics {
  private last: Counters;

  constructor(
    private readonly o: {
      service: Pick<CaptureService, 'metrics' | 'lagSeconds'>;
      sink: Pick<KinesisSink, 'metrics'>;
      sourceUrl: string;
      slotName: string;
      slotQueryTimeoutMs?: number;
      write?: (metrics: Metrics) => void;
    },
  ) {
    this.last = this.counters();
  }

  private counters(): Counters {
    return { at: Date.now(), changes: this.o.service.metrics.changes, bytes: this.o.sink.metrics.bytes, retries: this.o.sink.metrics.retries };
  }

  /** Emit one line; returns the slot health, or null when the source did not answer. */
  async emit(): Promise<SlotHealth | null> {
    const slot = await this.slotHealth();
    const now = this.counters();
    const { sink, service } = this.o;
    (this.o.write ?? ((m) => emitMetrics('capture', m)))(
      captureMetrics({
        slot,
        lagSeconds: service.lagSeconds(),
        schemaIssues: service.metrics.schemaIssues.length,
        putLatencyMs: sink.metrics.putCalls ? sink.metrics.putLatencyMsTotal / sink.metrics.putCalls : 0,
        now,
        last: this.last,
      }),
    );
    this.last = now;
    return slot;
  }

  private async slotHealth(): Promise<SlotHealth | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = this.o.slotQueryTimeoutMs ?? SLOT_QUERY_TIMEOUT_MS;
    const client = new pg.Client({ ...connectionConfig(this.o.sourceUrl), connectionTimeoutMillis: timeoutMs });
    client.on('error', () => undefined); // the query's rejection reports it
    try {
      const health = await Promise.race([
        client.connect().then(() => readSlotHealth(client, this.o.slotName)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      if (['unreserved', 'lost', 'missing'].includes(health.walStatus)) log.error({ slot: this.o.slotName, ...health }, 'replication slot WAL at risk');
      return health;
    } catch (err) {
      log.error({ slot: this.o.slotName, err: (err as Error).message }, 'source unreachable: slot health unknown');
      return null;
    } finally {
      clearTimeout(timer);
      client.end().catch(() => undefined);
    }
  }
}
