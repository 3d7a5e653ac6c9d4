/**
 * What sealing personal values costs (formats/personal-data.ts): capture → Kinesis and the
 * processor, events/s with sealing on and off, in turns (on, off, padded, then off, padded, on,
 * …: no kind always runs first), over changes made in memory, so the figure is the sealing and
 * the larger records alone, not the WAL's decoding.
 * Two mixes: `staff`, every change a staff member's (each value sealed: the worst case), and
 * `oltp`, the business's shape (an order, its transaction and payment; a staff or counterparty
 * change in every hundred). The key store is a bucket on the bench's s3rver with a local master
 * key, warmed before the first turn (every subject has a key), as in a running capture; each
 * sealing turn starts with no sealed text kept, so it seals each distinct value once.
 *
 * A third turn, `padded`, sends the same changes clear but with each personal value padded to
 * the length of its sealed text: the same bytes without the sealing. Sealed over padded is what
 * the sealing itself costs; padded over clear what the larger records cost.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { EventSealer } from '../capture/event-sealer.ts';
import { KinesisSink } from '../capture/kinesis-sink.ts';
import type { ChangeEvent, Row } from '../formats/change-event.ts';
import { bigIntToLsn } from '../formats/change-event.ts';
import { primaryKeyOf, type SourceTable } from '../formats/source-tables.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { BatchChain } from '../processors/batch-chain.ts';
import { LocalMasterKey } from '../stores/key-wrappers.ts';
import { MicroBatchStore } from '../stores/microbatch-store.ts';
import { ShardStream } from '../stores/shard-stream.ts';
import { SubjectKeys } from '../stores/subject-keys.ts';
import { readStream, runProcessor } from './downstream.ts';
import { createBucket, createStream, deleteStream, type BenchEnvironment } from './environment.ts';
import { ratioSpread, spread, type Spread } from './runs.ts';

export type PersonalMix = 'staff' | 'oltp';

export interface PersonalDataFigures {
  mix: PersonalMix;
  events: number;
  captureOn: Spread;
  captureOff: Spread;
  /** Per turn, sealing on over off (goal ≥ 0.90). */
  captureOnVsOff: Spread;
  processorOn: Spread;
  processorOff: Spread;
  processorOnVsOff: Spread;
  /** Clear values padded to their sealed length: the bytes of sealing without the sealing. */
  capturePadded: Spread;
  captureOnVsPadded: Spread;
  processorPadded: Spread;
  processorOnVsPadded: Spread;
  /**
   * Per turn, events per CPU second of the stage's own process (capture: its sealing and SDK
   * calls, not the emulator's; processor: as runProcessor counts), sealing on over off: what a
   * shared machine's load leaves of the wall-clock ratios' meaning; and sealed over padded.
   */
  captureCpuOnVsOff: Spread;
  processorCpuOnVsOff: Spread;
  captureCpuOnVsPadded: Spread;
  processorCpuOnVsPadded: Spread;
}

const STAMP = '2024-05-01 09:15:02.123';
const STAFF_MEMBERS = 20;

function row(table: SourceTable, id: number, i: number): Row {
  switch (table) {
    case 'staff':
      return {
        staff_id: id,
        first_name: `Jeremie${i % 97}`,
        last_name: 'Franey',
        department_id: 1 + (i % 8),
        email_address: `jeremie${i % 97}.franey@terrifictotes.com`,
        created_at: STAMP,
        last_updated: STAMP,
      };
    case 'counterparty':
      return {
        counterparty_id: id,
        counterparty_legal_name: 'Fahey and Sons',
        legal_address_id: 1,
        commercial_contact: `Micheal Toy ${i % 97}`,
        delivery_contact: 'Mrs. Lucy Runolfsdottir',
        created_at: STAMP,
        last_updated: STAMP,
      };
    default:
      return {
        sales_order_id: id,
        created_at: STAMP,
        last_updated: STAMP,
        design_id: 1,
        staff_id: 1 + (i % STAFF_MEMBERS),
        counterparty_id: 1,
        units_sold: 1000 + i,
        unit_price: '3.25',
        currency_id: 1,
        agreed_delivery_date: '2024-05-03',
        agreed_payment_date: '2024-05-04',
        agreed_delivery_location_id: 1,
      };
  }
}

/** `n` updates of the mix, each its own transaction. */
function changes(mix: PersonalMix, n: number): ChangeEvent[] {
  return Array.from({ length: n }, (_, i) => {
    const table: SourceTable = mix === 'staff' ? 'staff' : i % 100 === 0 ? 'staff' : i % 100 === 50 ? 'counterparty' : 'sales_order';
    const after = row(table, table === 'sales_order' ? 1 + i : 1 + (i % STAFF_MEMBERS), i);
    const source = { lsn: bigIntToLsn(0x1000000n + BigInt(i) * 256n), pos: 0, xid: 1000 + i, commitTime: '2024-05-01T09:15:02.123456Z' };
    return { v: 1, kind: 'change', op: 'u', table, key: { [primaryKeyOf(table)]: after[primaryKeyOf(table)] }, before: null, after, source };
  });
}

/** The clear change with each value that sealing changed padded to its sealed text's length. */
function padTo(clear: ChangeEvent, sealed: ChangeEvent): ChangeEvent {
  const pad = (row: Row | null, like: Row | null) =>
    row &&
    Object.fromEntries(Object.entries(row).map(([c, v]) => [c, typeof v === 'string' && like?.[c] !== v ? v.padEnd(String(like?.[c] ?? v).length, '.') : v]));
  return { ...clear, before: pad(clear.before, sealed.before), after: pad(clear.after, sealed.after) };
}

export async function measurePersonalData(
  env: BenchEnvironment,
  mix: PersonalMix,
  n: number,
  turns: number,
  say: (line: string) => void,
): Promise<PersonalDataFigures> {
  const kinesis = kinesisClient({ kinesisEndpoint: env.kinesisEndpoint });
  const s3 = s3Client({ s3Endpoint: env.s3Endpoint });
  const dir = mkdtempSync(join(tmpdir(), 'totes-bench-master-key-'));
  const keysBucket = `bench-keys-${mix}`;
  await createBucket(env, keysBucket);
  const keys = new SubjectKeys(s3, keysBucket, LocalMasterKey.fromFile(join(dir, 'master.key'), true));
  const events = changes(mix, n);
  const warm = new EventSealer(keys);
  const padded: ChangeEvent[] = [];
  for (const e of events) padded.push(padTo(e, await warm.seal(e)));

  /** One turn: capture → Kinesis, then the processor over what the stream holds. */
  type Turn = { capture: number; processor: number; captureCpu: number; processorCpu: number };
  const turn = async (kind: 'on' | 'off' | 'padded', i: number): Promise<Turn> => {
    const name = `bench-personal-${mix}-${kind}-${i + 1}`;
    say(`personal data, ${mix}: turn ${i + 1}/${turns}, sealing ${kind}: ${n.toLocaleString()} changes → Kinesis, then the processor`);
    await createStream(env, name);
    await createBucket(env, name);
    const sink = new KinesisSink({ client: kinesis, streamName: name, sealer: kind === 'on' ? new EventSealer(keys) : undefined });
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    for (const e of kind === 'padded' ? padded : events) await sink.write(e);
    await sink.flush();
    const capture = n / ((performance.now() - started) / 1000);
    const cpu = process.cpuUsage(cpuBefore);
    const captureCpu = n / ((cpu.user + cpu.system) / 1e6);
    await sink.close();
    const processor = await runProcessor(
      new MicroBatchStore(s3, name),
      new BatchChain(new ShardStream(kinesis, name)),
      await readStream(kinesis, name, sink.metrics.records),
    );
    await deleteStream(env, name);
    return { capture, processor: processor.eventsPerSecond, captureCpu, processorCpu: processor.eventsPerCpuSecond };
  };
  try {
    // the three kinds of turn in a rotating order (on off padded, off padded on, …): a kind
    // that always ran first would pay alone for what the turns before it left (garbage, JIT)
    const kinds = ['on', 'off', 'padded'] as const;
    const runs = { on: [] as Turn[], off: [] as Turn[], padded: [] as Turn[] };
    for (let i = 0; i < turns; i++)
      for (let k = 0; k < kinds.length; k++) {
        const kind = kinds[(i + k) % kinds.length];
        runs[kind].push(await turn(kind, i));
      }
    type Figure = keyof Turn;
    const on = (k: Figure) => runs.on.map((r) => r[k]);
    const off = (k: Figure) => runs.off.map((r) => r[k]);
    const pad = (k: Figure) => runs.padded.map((r) => r[k]);
    return {
      mix,
      events: n,
      captureOn: spread(on('capture')),
      captureOff: spread(off('capture')),
      captureOnVsOff: ratioSpread(on('capture'), off('capture')),
      processorOn: spread(on('processor')),
      processorOff: spread(off('processor')),
      processorOnVsOff: ratioSpread(on('processor'), off('processor')),
      capturePadded: spread(pad('capture')),
      captureOnVsPadded: ratioSpread(on('capture'), pad('capture')),
      processorPadded: spread(pad('processor')),
      processorOnVsPadded: ratioSpread(on('processor'), pad('processor')),
      captureCpuOnVsOff: ratioSpread(on('captureCpu'), off('captureCpu')),
      processorCpuOnVsOff: ratioSpread(on('processorCpu'), off('processorCpu')),
      captureCpuOnVsPadded: ratioSpread(on('captureCpu'), pad('captureCpu')),
      processorCpuOnVsPadded: ratioSpread(on('processorCpu'), pad('processorCpu')),
    };
  } finally {
    kinesis.destroy();
    s3.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The figures as lines beside the bench's table. */
export function formatPersonalData(figures: PersonalDataFigures[]): string {
  const m = (s: Spread, digits = 0) =>
    `${s.median.toLocaleString('en-GB', { maximumFractionDigits: digits, minimumFractionDigits: digits })} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
  return figures
    .map(
      (f) =>
        `personal data, ${f.mix} (${f.events.toLocaleString()} changes): capture → Kinesis ${m(f.captureOn)} events/s sealed, ${m(f.captureOff)} clear, ratio ${m(f.captureOnVsOff, 2)}; ` +
        `processor ${m(f.processorOn)} sealed, ${m(f.processorOff)} clear, ratio ${m(f.processorOnVsOff, 2)} (goal ≥ 0.90); ` +
        `clear padded to the sealed length: capture ${m(f.capturePadded)}, sealed over padded ${m(f.captureOnVsPadded, 2)}, processor ${m(f.processorPadded)}, sealed over padded ${m(f.processorOnVsPadded, 2)}; ` +
        `per CPU second of the stage's process, sealed over clear: capture ${m(f.captureCpuOnVsOff, 2)}, processor ${m(f.processorCpuOnVsOff, 2)}; ` +
        `sealed over padded: capture ${m(f.captureCpuOnVsPadded, 2)}, processor ${m(f.processorCpuOnVsPadded, 2)}`,
    )
    .join('\n');
}
