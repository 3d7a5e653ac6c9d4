/**
 * Which micro-batches to load next, whatever way the stream was cut into batches. Pure apart
 * from the `next` question it asks the stream (stores/shard-stream.ts).
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
 * The processor asks the stream the same question when it writes a batch (`follows` in the
 * manifest), while the records are fresh: a batch that says it follows the frontier extends it
 * without a question, which keeps a long backlog from waiting on the stream's read budget, and
 * proves contiguity after the stream has aged the records out. Where neither answers (records
 * past the stream's retention, a batch with no `follows`), the batches are taken in their order
 * and the junction is reported as unproven: a batch the event source mapping gave up on there
 * could not show.
 *
 * When the record after the frontier is in no batch while later batches exist, those records
 * were skipped (an event source mapping that gave up on a batch, or one re-created at a later
 * position): a gap. The shard stops there, its watermark with it, until the range is processed.
 *
 * Resharding: a child shard's batches wait until every parent has been loaded to its end, so
 * the changes of one key (on the parent, then on a child) load in order.
 */
import { compareSequences, type Manifest } from '../formats/manifest.ts';
import type { NextRecord, ShardInfo } from '../stores/shard-stream.ts';

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

/** Where the plan took a batch after the frontier with nothing to prove it follows (records aged out of the stream). */
export interface UnprovenJunction {
  after: string;
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
  unproven: UnprovenJunction[];
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

/** The batch that extends the frontier next, a gap, or nothing to take until the stream says more. */
type Step = { batch: PendingBatch; unproven: boolean } | { gap: Gap } | null;

/** The earliest-starting of `batches` (the longest of those that start together). */
function earliest(batches: PendingBatch[]): PendingBatch {
  const first = batches.reduce(
    (min, b) => (compareSequences(b.manifest.firstSequence, min) < 0 ? b.manifest.firstSequence : min),
    batches[0].manifest.firstSequence,
  );
  return furthest(batches.filter((b) => b.manifest.firstSequence === first))!;
}

/** Which of `remaining` (each reaching past `to`) extends the frontier `to`. */
async function step(shard: string, to: string | null, remaining: PendingBatch[], next: Ask): Promise<Step> {
  if (remaining.length === 0) return null;
  if (to !== null) {
    // a batch that starts at or before the frontier and runs past it: contiguous, no question to ask
    const overlapping = furthest(remaining.filter((b) => atOrBefore(b.manifest.firstSequence, to)));
    if (overlapping) return { batch: overlapping, unproven: false };
    // a batch the processor found to follow the frontier when it wrote it
    const claimed = furthest(remaining.filter((b) => b.manifest.follows === to));
    if (claimed) return { batch: claimed, unproven: false };
  }
  const n = await next(shard, to);
  if (n.kind === 'trimmed' && to !== null) {
    const taken = earliest(remaining);
    // the records after the frontier aged out; one the stream still holds before this batch is in none
    if (n.oldest !== null && after(taken.manifest.firstSequence, n.oldest))
      return { gap: { after: to, missing: n.oldest, missingArrivedAt: null, resumesAt: taken.manifest.firstSequence } };
    return { batch: taken, unproven: true };
  }
  if (n.kind !== 'record') return null; // the stream does not show those records yet: ask again next time
  const starting = furthest(
    remaining.filter((b) =>
      to === null
        ? // the shard's first record still in the stream; a batch may begin before it (trimmed)
          atOrBefore(b.manifest.firstSequence, n.sequence) && atOrBefore(n.sequence, b.manifest.lastSequence)
        : compareSequences(b.manifest.firstSequence, n.sequence) === 0,
    ),
  );
  if (starting) return { batch: starting, unproven: false };
  return { gap: { after: to, missing: n.sequence, missingArrivedAt: n.arrivedAt, resumesAt: earliest(remaining).manifest.firstSequence } };
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
    unproven: [] as UnprovenJunction[],
  };
  if (state.ended) return plan;
  let remaining = pending.filter((b) => plan.to === null || after(b.manifest.lastSequence, plan.to));
  for (;;) {
    const taken = await step(shard.id, plan.to, remaining, next);
    if (taken === null) break;
    if ('gap' in taken) {
      plan.gap = taken.gap;
      break;
    }
    if (taken.unproven) plan.unproven.push({ after: plan.to!, resumesAt: taken.batch.manifest.firstSequence });
    plan.batches.push(taken.batch);
    const reached = taken.batch.manifest.lastSequence;
    plan.to = reached;
    remaining = remaining.filter((b) => after(b.manifest.lastSequence, reached));
  }
  if (shard.closed && !plan.gap && remaining.length === 0) {
    const last = await next(shard.id, plan.to);
    // a closed shard whose records have all aged out ends where its batches end
    plan.ended = last.kind === 'end' || (last.kind === 'trimmed' && last.oldest === null);
  }
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
        ? { shard: shard.id, parents: shard.parents, from: state.frontier, batches: [], to: state.frontier, ended: false, gap: null, unproven: [], waitingFor }
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
