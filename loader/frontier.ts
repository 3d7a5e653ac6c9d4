/**
 * Which micro-batches to load next, whatever way the stream was cut into batches. Pure apart
 * from the `next` question it asks the stream (shard-stream.ts).
 *
 * Per shard the loader keeps a frontier: the last record of the loaded prefix of the shard, so
 * every record up to it is loaded. A batch is a contiguous read of the shard from its first to
 * its last record, so it extends the frontier when it starts at or before the frontier (an
 * overlap: a retry, a re-cut, a re-created mapping) or exactly at the record after it (asked of
 * the stream: sequence numbers are not contiguous). Batches are loaded only in that order, so a
 * shard is loaded in stream order however its batches arrived, and the versions that depend on
 * the one before them (a delete carries the values it ends, a snapshot read appends only when it
 * differs, unchanged TOAST columns keep theirs) come out as in-order loading makes them.
 *
 * When the record after the frontier is in no batch while later batches exist, those records
 * were skipped (an event source mapping that gave up on a batch, or one re-created at a later
 * position): a gap. The shard stops there, its watermark with it, until the range is processed.
 *
 * Resharding: a child shard's batches wait until every parent has been loaded to its end, so
 * the changes of one key (on the parent, then on a child) load in order.
 */
import { compareSequences, type Manifest } from '../formats/manifest.ts';
import type { NextRecord, ShardInfo } from './shard-stream.ts';

export interface ShardState {
  /** Last record of the loaded prefix of the shard; null before anything is loaded. */
  frontier: string | null;
  /** Closed and loaded to its end. */
  ended: boolean;
}

export interface PendingBatch {
  key: string;
  manifest: Manifest;
}

export interface Gap {
  /** The frontier: every record up to here is loaded (null: nothing yet). */
  after: string | null;
  /** The first record no batch holds. */
  missing: string;
  missingArrivedAt: Date | null;
  /** Where the first batch after the gap starts. */
  resumesAt: string;
}

export interface ShardPlan {
  shard: string;
  /** The shards it was split or merged from. */
  parents: string[];
  /** The frontier before the plan. */
  from: string | null;
  /** In load order; each extends the frontier. */
  batches: PendingBatch[];
  /** The frontier once `batches` are loaded. */
  to: string | null;
  /** Closed, and nothing on it is left to load once `batches` are. */
  ended: boolean;
  gap: Gap | null;
  /** Parents not yet loaded to their end: this shard waits for them. */
  waitingFor: string[];
}

type Ask = (shard: string, after: string | null) => Promise<NextRecord>;

const after = (a: string, b: string) => compareSequences(a, b) > 0;
const atOrBefore = (a: string, b: string) => compareSequences(a, b) <= 0;

/** The longest batch among `batches` (the one that reaches furthest). */
function furthest(batches: PendingBatch[]): PendingBatch | null {
  let best: PendingBatch | null = null;
  for (const b of batches) if (!best || after(b.manifest.lastSequence, best.manifest.lastSequence)) best = b;
  return best;
}

/** Plan one shard from its frontier over the batches that reach past it. */
export async function planShard(shard: ShardInfo, state: ShardState, pending: PendingBatch[], next: Ask): Promise<Omit<ShardPlan, 'waitingFor'>> {
  const plan = {
    shard: shard.id,
    parents: shard.parents,
    from: state.frontier,
    batches: [] as PendingBatch[],
    to: state.frontier,
    ended: state.ended,
    gap: null as Gap | null,
  };
  if (state.ended) return plan;
  let remaining = pending.filter((b) => plan.to === null || after(b.manifest.lastSequence, plan.to));
  for (;;) {
    const to = plan.to;
    // a batch that starts at or before the frontier and runs past it: contiguous, no question to ask
    const overlapping = to === null ? null : furthest(remaining.filter((b) => atOrBefore(b.manifest.firstSequence, to)));
    if (!overlapping) {
      if (remaining.length === 0) break;
      const n = await next(shard.id, to);
      if (n.kind !== 'record') break; // the stream does not show those records yet: ask again next time
      const starting = furthest(
        remaining.filter((b) =>
          to === null
            ? // the shard's first record still in the stream; a batch may begin before it (trimmed)
              atOrBefore(b.manifest.firstSequence, n.sequence) && atOrBefore(n.sequence, b.manifest.lastSequence)
            : compareSequences(b.manifest.firstSequence, n.sequence) === 0,
        ),
      );
      if (!starting) {
        const resumesAt = remaining.reduce(
          (min, b) => (compareSequences(b.manifest.firstSequence, min) < 0 ? b.manifest.firstSequence : min),
          remaining[0].manifest.firstSequence,
        );
        plan.gap = { after: to, missing: n.sequence, missingArrivedAt: n.arrivedAt, resumesAt };
        break;
      }
      plan.batches.push(starting);
      plan.to = starting.manifest.lastSequence;
    } else {
      plan.batches.push(overlapping);
      plan.to = overlapping.manifest.lastSequence;
    }
    const reached = plan.to!;
    remaining = remaining.filter((b) => after(b.manifest.lastSequence, reached));
  }
  if (shard.closed && !plan.gap && remaining.length === 0) plan.ended = (await next(shard.id, plan.to)).kind === 'end';
  return plan;
}

/**
 * Plan every shard: parents before children, a child only once all its parents end (a parent
 * the stream no longer lists has aged out of it and counts as ended).
 */
export async function planShards(shards: ShardInfo[], states: Map<string, ShardState>, pending: Map<string, PendingBatch[]>, next: Ask): Promise<ShardPlan[]> {
  const byId = new Map(shards.map((s) => [s.id, s]));
  const plans = new Map<string, ShardPlan>();
  const ended = (id: string) => !byId.has(id) || (plans.get(id)?.ended ?? states.get(id)?.ended ?? false);
  const visit = async (shard: ShardInfo, path: Set<string>): Promise<void> => {
    if (plans.has(shard.id) || path.has(shard.id)) return;
    path.add(shard.id);
    for (const p of shard.parents) if (byId.has(p)) await visit(byId.get(p)!, path);
    const state = states.get(shard.id) ?? { frontier: null, ended: false };
    const waitingFor = shard.parents.filter((p) => !ended(p));
    plans.set(
      shard.id,
      waitingFor.length > 0
        ? { shard: shard.id, parents: shard.parents, from: state.frontier, batches: [], to: state.frontier, ended: false, gap: null, waitingFor }
        : { ...(await planShard(shard, state, pending.get(shard.id) ?? [], next)), waitingFor },
    );
  };
  for (const s of shards) await visit(s, new Set());
  return [...plans.values()];
}

/**
 * The plans' batches in load order: each shard's in its own order, parents' before their
 * children's, and otherwise interleaved by the newest commit they hold, so a transaction cut
 * from the front of this list holds the same span of time from every shard. Loading one shard's
 * backlog before another's would merge facts whose dimension rows (on another shard) come only in
 * a later transaction: each such key first as an inferred member, filled in later.
 */
export function loadOrder<P extends Pick<ShardPlan, 'shard' | 'parents' | 'batches'>>(plans: P[]): { plan: P; batch: PendingBatch }[] {
  // planShards lists parents before children, so one pass finds each plan's generation
  const generation = new Map<string, number>();
  for (const p of plans) {
    const parents = p.parents.filter((id) => generation.has(id) && (plans.find((q) => q.shard === id)?.batches.length ?? 0) > 0);
    generation.set(p.shard, parents.length === 0 ? 0 : 1 + Math.max(...parents.map((id) => generation.get(id)!)));
  }
  const queues = plans.map((plan) => {
    let at = Number.NEGATIVE_INFINITY; // a batch without commits (heartbeats only) goes with the one before it
    return {
      generation: generation.get(plan.shard)!,
      items: plan.batches.map((batch) => {
        const t = batch.manifest.maxCommitTime ? Date.parse(batch.manifest.maxCommitTime) : Number.NaN;
        if (!Number.isNaN(t)) at = Math.max(at, t);
        return { plan, batch, at };
      }),
    };
  });
  const order: { plan: P; batch: PendingBatch }[] = [];
  for (;;) {
    let best: (typeof queues)[number] | null = null;
    for (const q of queues) {
      if (q.items.length === 0) continue;
      if (!best || q.generation < best.generation || (q.generation === best.generation && q.items[0].at < best.items[0].at)) best = q;
    }
    if (!best) return order;
    const { plan, batch } = best.items.shift()!;
    order.push({ plan, batch });
  }
}
