/**
 * `totes verify --as-of`: the oracle pinned to one source commit. The truth is computed, with
 * the same SQL as `totes verify`, in a source snapshot that corresponds exactly to a WAL position
 * (source-snapshot.ts); then verify waits until the warehouse has loaded past that position and
 * compares the warehouse's `as_of` schema, read with `totes.as_of` set to it, table by table.
 * Nothing is in flight at a pinned point, so nothing is checked again: any difference is one.
 *
 * The truth can be saved (`--save`) and compared later (`--at`), after further changes have
 * loaded: the warehouse must still show that point exactly, which only a warehouse that keeps
 * every version can.
 */
import { erasedStaffIn, expectErased } from './erasures.ts';
import { readFile, writeFile } from 'node:fs/promises';
import pg, { connectionConfig } from '../lib/pg.ts';
import { FatalError } from '../lib/fatal.ts';
import { type PinnedPoint, inPinnedSnapshot } from './source-snapshot.ts';
import {
  bySourceRow,
  compareWith,
  deadLetterAccount,
  expectLoaderState,
  type Found,
  readTruth,
  STAR_TABLES,
  type Side,
  type StarTable,
  tableResults,
  type Truth,
  type VerifyOptions,
  type VerifyResult,
  waitForCaptureSnapshot,
  waitForWatermarkPast,
  writeHeartbeat,
} from './verify.ts';

/** The schema that shows every table of warehouse schema `schema` as of `totes.as_of`: as_of beside public, `<schema>_as_of` beside another. */
export const asOfSchemaOf = (schema: string) => (schema === 'public' ? 'as_of' : `${schema}_as_of`);

/** A truth pinned at a source position, as `--save` writes it and `--at` reads it. */
export interface PinnedTruth {
  point: PinnedPoint;
  /** When it was pinned (UTC), for the reader. */
  pinnedAt: string;
  truth: Truth;
}

export interface AsOfOptions extends Omit<VerifyOptions, 'sourceUrl' | 'rechecks'> {
  /** The source to pin a snapshot of; not needed with `at`. */
  sourceUrl?: string;
  /** A truth pinned earlier, compared instead of pinning one now. */
  at?: PinnedTruth;
  /** Told the truth as soon as it is pinned, before the wait (to save it). */
  onPinned?: (pinned: PinnedTruth) => Promise<void>;
}

export interface AsOfResult extends VerifyResult {
  point: PinnedPoint;
}

export async function verifyAsOf(opts: AsOfOptions): Promise<AsOfResult> {
  const warehouse = new pg.Client(connectionConfig(opts.warehouseUrl));
  const schema = opts.schema ?? 'public';
  const waitMs = opts.waitMs ?? 60_000;
  const deadline = Date.now() + waitMs;
  const { account, close } = deadLetterAccount(opts.deadLetters);
  try {
    await warehouse.connect();
    const asOf = asOfSchemaOf(schema);
    await warehouse.query(`SET DateStyle TO ISO; SET search_path TO "${asOf}"`);
    await expectLoaderState(warehouse, schema);
    await expectAsOfViews(warehouse, asOf);
    const pinned = opts.at ?? (await pinTruth(requireSource(opts.sourceUrl), deadline, waitMs));
    if (!opts.at) await opts.onPinned?.(pinned);
    const { point, truth } = pinned;
    const freshness = `"${schema}".totes_freshness`;
    const watermarkLsn = await waitForWatermarkPast(warehouse, freshness, point.lsn, deadline, waitMs, 'or check that the loader is running');
    // session-wide: every as_of view read below shows the warehouse at that point
    await warehouse.query(`SELECT set_config('totes.as_of', $1, false)`, [point.lsn]);
    // an erasure reaches back through the history: a truth saved before it is expected erased too
    expectErased(truth.tables.dim_staff, await erasedStaffIn(warehouse, opts.keys));
    const differences = await compareWith(warehouse, truth);
    const setAside = (await account(truth.setAside)).sort(bySourceRow);
    const tables = await tableResults(warehouse, differences, setAside);
    const ok = differences.length === 0 && setAside.every((s) => s.deadLetter !== null);
    return { ok, tables, differences, setAside, watermarkLsn, point };
  } finally {
    await warehouse.end().catch(() => undefined);
    close();
  }
}

function requireSource(url: string | undefined): string {
  if (!url) throw new FatalError('verify --as-of needs the source (--source) to pin a snapshot of', 2);
  return url;
}

/** Every star table must be in the as_of schema: a table missing there would otherwise not be compared at that point. */
async function expectAsOfViews(warehouse: pg.Client, asOf: string): Promise<void> {
  const { rows } = await warehouse.query(`SELECT t FROM unnest($1::text[]) t WHERE to_regclass(format('%I.%I', $2::text, t)) IS NULL`, [STAR_TABLES, asOf]);
  if (rows.length > 0)
    throw new FatalError(
      `the warehouse has no ${rows.map((r) => `${asOf}.${r.t}`).join(', ')}: its loader predates the warehouse's history; start the current loader once to create them`,
    );
}

/** Pins a source snapshot, reads the truth in it, and writes a heartbeat after it so the warehouse's watermark moves past it promptly. */
async function pinTruth(sourceUrl: string, deadline: number, waitMs: number): Promise<PinnedTruth> {
  const source = new pg.Client(connectionConfig(sourceUrl));
  try {
    await source.connect();
    // the capture service's own snapshot still running: its rows carry later LSNs than their commits
    await waitForCaptureSnapshot(source, deadline, waitMs);
    const pinned = await inPinnedSnapshot(sourceUrl, async (db, point) => {
      await db.query(`SET DateStyle TO ISO`);
      return { point, pinnedAt: new Date().toISOString(), truth: await readTruth(db) };
    });
    await writeHeartbeat(source);
    return pinned;
  } finally {
    await source.end().catch(() => undefined);
  }
}

interface SavedTruth {
  v: 1;
  point: PinnedPoint;
  pinnedAt: string;
  tables: Record<string, [string, Record<string, string | null>][]>;
  setAside: Found[];
  referencedDates: string[];
}

/** Writes a pinned truth to `file` as JSON (values as the text Postgres printed them). */
export async function saveTruth(file: string, { point, pinnedAt, truth }: PinnedTruth): Promise<void> {
  const saved: SavedTruth = {
    v: 1,
    point,
    pinnedAt,
    tables: Object.fromEntries(Object.entries(truth.tables).map(([t, side]) => [t, [...side]])),
    setAside: truth.setAside,
    referencedDates: [...truth.referencedDates].sort(),
  };
  await writeFile(file, JSON.stringify(saved));
}

/** Reads a truth `saveTruth` wrote. */
export async function loadTruth(file: string): Promise<PinnedTruth> {
  let saved: SavedTruth;
  try {
    saved = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new FatalError(`could not read the saved truth ${file} (${(err as Error).message}): give a file \`totes verify --as-of --save\` wrote`, 2);
  }
  if (saved?.v !== 1 || !saved.point?.lsn || !saved.tables)
    throw new FatalError(`${file} is not a truth \`totes verify --as-of --save\` wrote (no version 1, point or tables)`, 2);
  const tables: Partial<Record<StarTable, Side>> = {};
  for (const [t, rows] of Object.entries(saved.tables)) tables[t as StarTable] = new Map(rows);
  return { point: saved.point, pinnedAt: saved.pinnedAt, truth: { tables, setAside: saved.setAside, referencedDates: new Set(saved.referencedDates) } };
}
