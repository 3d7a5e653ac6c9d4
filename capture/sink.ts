/**
 * Where captured events go. The capture service only knows this interface; Kinesis (the real
 * service or kinesalite) and a null sink for benchmarks plug in behind it.
 *
 * Every event written gets an increasing index. `acceptedThrough` is the highest index such
 * that it and every event before it have been accepted by the stream: the capture service
 * acknowledges WAL only up to the commit whose last event is at or below it.
 */
import type { BroadcastEvent, ChangeEvent } from '../formats/change-event.ts';

export interface ChangeSink {
  /** Queue a change; resolves once buffered, waiting while the sink is full (backpressure). */
  write(event: ChangeEvent): Promise<number>;
  /** Deliver a heartbeat, truncate or snapshot range on every shard, after everything written before it. */
  broadcast(event: BroadcastEvent): Promise<number>;
  /** Index of the last event written (-1 before any). */
  readonly writtenThrough: number;
  readonly acceptedThrough: number;
  onAccepted(listener: (through: number) => void): void;
  /** Resolves when every event written so far is accepted. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Accepts everything at once: measures capture alone. */
export class NullSink implements ChangeSink {
  writtenThrough = -1;
  acceptedThrough = -1;
  bytes = 0;
  private listeners: ((through: number) => void)[] = [];
  async write(event: ChangeEvent): Promise<number> {
    return this.accept(JSON.stringify(event).length);
  }
  async broadcast(event: BroadcastEvent): Promise<number> {
    return this.accept(JSON.stringify(event).length);
  }
  private accept(bytes: number): number {
    this.bytes += bytes;
    this.acceptedThrough = ++this.writtenThrough;
    for (const l of this.listeners) l(this.acceptedThrough);
    return this.writtenThrough;
  }
  onAccepted(listener: (through: number) => void): void {
    this.listeners.push(listener);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
