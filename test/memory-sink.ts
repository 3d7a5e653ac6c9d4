/** A ChangeSink that keeps events in memory, for tests that control delivery themselves. */
import type { BroadcastEvent, ChangeEvent, StreamEvent } from '../formats/change-event.ts';
import type { ChangeSink } from '../capture/sink.ts';

export class MemorySink implements ChangeSink {
  readonly events: StreamEvent[] = [];
  /** The events broadcast (sent on every shard), also in `events`. */
  readonly broadcasts: BroadcastEvent[] = [];
  writtenThrough = -1;
  acceptedThrough = -1;
  private listeners: ((through: number) => void)[] = [];
  /** While set, writes are buffered but not accepted (a stream that has not acknowledged yet). */
  stalled = false;
  /** While set, writes wait (a stream that is down: the producer's buffer is full). */
  blocked = false;

  async write(event: ChangeEvent): Promise<number> {
    while (this.blocked) await new Promise((r) => setTimeout(r, 10));
    return this.add(event);
  }

  async broadcast(event: BroadcastEvent): Promise<number> {
    while (this.blocked) await new Promise((r) => setTimeout(r, 10));
    this.broadcasts.push(event);
    return this.add(event);
  }

  private add(event: StreamEvent): number {
    this.events.push(event);
    this.writtenThrough++;
    if (!this.stalled) this.acceptAll();
    return this.writtenThrough;
  }

  acceptAll(): void {
    this.acceptedThrough = this.writtenThrough;
    for (const l of this.listeners) l(this.acceptedThrough);
  }

  onAccepted(listener: (through: number) => void): void {
    this.listeners.push(listener);
  }

  async flush(): Promise<void> {
    while (this.stalled) await new Promise((r) => setTimeout(r, 10));
  }

  async close(): Promise<void> {}
}
