/**
 * Whether the capture service is healthy, for the Fargate task's health check and /health:
 * streaming, and the stream accepting what it writes. Progress, not age: during a catch-up after
 * an outage capture writes old changes and old heartbeats, so the newest heartbeat's age says
 * nothing about whether it is stuck; whether Kinesis has accepted anything lately does. And it
 * is never healthy before the stream has accepted a heartbeat, so a capture that reaches
 * Postgres but not Kinesis does not pass the start period.
 */
export interface CaptureProgress {
  state: string;
  /** Events the stream has accepted, in order (the sink's acceptedThrough). */
  acceptedThrough: number;
  /** Heartbeats the stream has accepted. */
  heartbeats: number;
  /** The slot's wal_status, as last read. */
  walStatus: string;
}

export interface CaptureHealth {
  healthy: boolean;
  /** Why not, in a sentence; null when healthy. */
  reason: string | null;
  /** Seconds since the stream last accepted anything; null before it ever has. */
  secondsSinceProgress: number | null;
}

export class ProgressWatch {
  private seen = { acceptedThrough: -1, heartbeats: 0 };
  private progressAt: number | null = null;

  /** `maxStallSeconds`: the longest a streaming capture may go with nothing accepted by the stream (heartbeats come every few seconds). */
  constructor(private readonly maxStallSeconds: number) {}

  /** Read on every health check: progress is noticed when a counter has moved since the last look. */
  check(p: CaptureProgress, now = Date.now()): CaptureHealth {
    if (p.acceptedThrough > this.seen.acceptedThrough || p.heartbeats > this.seen.heartbeats) {
      this.seen = { acceptedThrough: p.acceptedThrough, heartbeats: p.heartbeats };
      this.progressAt = now;
    }
    const since = this.progressAt === null ? null : (now - this.progressAt) / 1000;
    const reason =
      p.state !== 'streaming'
        ? `capture is ${p.state}, not streaming`
        : p.walStatus === 'lost'
          ? 'the replication slot has lost WAL it needs'
          : p.heartbeats === 0
            ? 'the stream has not accepted a heartbeat yet'
            : since !== null && since > this.maxStallSeconds
              ? `the stream has accepted nothing for ${Math.round(since)} s`
              : null;
    return { healthy: reason === null, reason, secondsSinceProgress: since };
  }
}
