/**
 * How a loop retries what failed: exponential backoff with full jitter, a deadline, and which
 * errors are worth another attempt. Each loop states its policy beside it; Retry keeps the
 * count.
 */
export interface RetryPolicy {
  /** The longest wait after the first failure; each further failure in a row doubles it, up to capMs. */
  firstMs: number;
  capMs: number;
  /** Give up on a failure this long after the loop began or last succeeded (unset: never). */
  deadlineMs?: number;
  /** Whether a later attempt can get past `err` by itself (unset: every error). */
  transient?: (err: unknown) => boolean;
}

/** The longest wait after the `failures`-th failure in a row. */
export function ceilingMs(policy: RetryPolicy, failures: number): number {
  return Math.min(policy.capMs, policy.firstMs * 2 ** (failures - 1));
}

/** What a failure leads to: a wait, or null (giving up) where the policy can give up. */
type Wait<P extends RetryPolicy> = P extends { deadlineMs: number } | { transient: (err: unknown) => boolean } ? number | null : number;

/** One loop's failures in a row under its policy. */
export class Retry<P extends RetryPolicy = RetryPolicy> {
  failures = 0;
  private since: number;

  constructor(
    readonly policy: P,
    private readonly now: () => number = Date.now,
  ) {
    this.since = now();
  }

  /** After a failure: how long to wait before the next attempt, or null when the policy gives up on `err`. */
  failed(err: unknown): Wait<P> {
    const { transient, deadlineMs } = this.policy;
    if ((transient && !transient(err)) || (deadlineMs !== undefined && this.now() - this.since > deadlineMs)) return null as Wait<P>;
    return Math.random() * ceilingMs(this.policy, ++this.failures);
  }

  /** After a success: the next failure is a first one again. */
  succeeded(): void {
    this.failures = 0;
    this.since = this.now();
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
