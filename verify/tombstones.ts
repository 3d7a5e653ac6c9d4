/**
 * Tombstones against the values they end (data-model.md: a deleted row keeps its values, for the
 * facts that point at it), however the loads were cut:
 *   a fact version recording an end (is_deleted: a delete, a TRUNCATE, a key a snapshot did
 *   not find) holds the values of its key's version just before it (none, when the row never
 *   had a version the warehouse could hold: its changes were set aside as dead letters);
 *   a deleted dimension row holds the values its source row had before it ended, as the raw
 *   archive shows them (every change the source streamed, read here by verify itself): the
 *   key's changes before the tombstone, an unchanged TOAST column taking the value before it.
 * A dimension tombstone is checked once the archive holds the delete or end it records: an
 * archive still behind the warehouse (Firehose buffers) has nothing to compare it with yet.
 */
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { RAW_PREFIX } from '../formats/archive-layout.ts';
import { type ChangeEvent, compareLsn, decodeEvent, lsnToBigInt, type StreamEvent } from '../formats/change-event.ts';
import { isSealed } from '../formats/personal-data.ts';
import { s3Client } from '../lib/aws.ts';
import type pg from '../lib/pg.ts';
import { type KeyStoreAt, SealedValues } from './sealed-values.ts';

const gunzipAsync = promisify(gunzip);

export interface TombstoneDifference {
  table: string;
  /** The natural key, and for a fact the version's position (key@lsn:pos). */
  key: string;
  column: string;
  expected: string | null;
  found: string | null;
}

/** Each fact's natural id and record id (data-model.md §2). */
const FACTS: Record<string, { key: string; recordId: string }> = {
  fact_sales_order: { key: 'sales_order_id', recordId: 'sales_record_id' },
  fact_purchase_order: { key: 'purchase_order_id', recordId: 'purchase_record_id' },
  fact_payment: { key: 'payment_id', recordId: 'payment_record_id' },
};

/** Each dimension's source table and key (data-model.md §2); the source's key is `<table>_id`. */
const DIMENSIONS: Record<string, { source: string; key: string }> = {
  dim_staff: { source: 'staff', key: 'staff_id' },
  dim_location: { source: 'address', key: 'location_id' },
  dim_counterparty: { source: 'counterparty', key: 'counterparty_id' },
  dim_currency: { source: 'currency', key: 'currency_id' },
  dim_design: { source: 'design', key: 'design_id' },
  dim_payment_type: { source: 'payment_type', key: 'payment_type_id' },
  dim_transaction: { source: 'transaction', key: 'transaction_id' },
};

/** A stream position as one text, whichever way its LSN is printed (the stream's and Postgres's differ). */
const positionOf = (lsn: string, pos: number) => `${lsnToBigInt(lsn)}:${pos}`;

const PROVENANCE = ['source_op', 'source_lsn', 'source_pos', 'source_commit_time', 'is_deleted'];

const text = (v: unknown): string | null => (v === null || v === undefined ? null : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** Column by column, what `found` holds where `expected` differs. */
function differing(table: string, key: string, expected: Record<string, unknown>, found: Record<string, unknown>): TombstoneDifference[] {
  return Object.keys(expected)
    .filter((c) => text(expected[c]) !== text(found[c]))
    .map((c) => ({ table, key, column: c, expected: text(expected[c]), found: text(found[c]) }));
}

/** Every fact version recording an end whose values are not those of the version before it (nulls when there is none). */
export async function checkFactEnds(warehouse: pg.ClientBase): Promise<TombstoneDifference[]> {
  const out: TombstoneDifference[] = [];
  for (const [table, { key, recordId }] of Object.entries(FACTS)) {
    const own = `ARRAY[${[recordId, key, ...PROVENANCE].map((c) => `'${c}'`).join(', ')}]`;
    const { rows } = await warehouse.query(
      `SELECT k, ended, before FROM (
         SELECT e.${key}::text || '@' || e.source_lsn::text || ':' || e.source_pos AS k, to_jsonb(e) - ${own} AS ended,
                coalesce(to_jsonb(p) - ${own}, (SELECT jsonb_object_agg(c, null) FROM jsonb_object_keys(to_jsonb(e) - ${own}) c)) AS before,
                e.${key} AS id, e.source_lsn, e.source_pos
           FROM ${table} e
           LEFT JOIN LATERAL (SELECT * FROM ${table} p WHERE p.${key} = e.${key} AND (p.source_lsn, p.source_pos) < (e.source_lsn, e.source_pos)
                               ORDER BY p.source_lsn DESC, p.source_pos DESC LIMIT 1) p ON true
          WHERE e.is_deleted) v
        WHERE ended IS DISTINCT FROM before ORDER BY id, source_lsn, source_pos`,
    );
    for (const r of rows) out.push(...differing(table, r.k, r.before, r.ended));
  }
  return out;
}

interface Tombstone {
  table: string;
  key: string;
  lsn: string;
  pos: number;
  row: Record<string, unknown>;
}

/**
 * Every deleted dimension row whose values are not those its source row had before it ended, as
 * the archive in `bucket` shows; a personal value the archive holds sealed is opened with `sealed`.
 */
export async function checkDimensionTombstones(warehouse: pg.ClientBase, s3: S3Client, bucket: string, sealed: SealedValues): Promise<TombstoneDifference[]> {
  const tombstones: Tombstone[] = [];
  for (const [table, { key }] of Object.entries(DIMENSIONS)) {
    const { rows } = await warehouse.query(
      `SELECT ${key}::text AS key, source_lsn::text AS lsn, source_pos AS pos, to_jsonb(d) - ARRAY['source_lsn', 'source_pos', 'is_deleted'] AS row
         FROM ${table} d WHERE is_deleted ORDER BY ${key}`,
    );
    for (const r of rows) tombstones.push({ table, ...r });
  }
  if (tombstones.length === 0) return [];
  const wanted = new Set(tombstones.map((t) => `${DIMENSIONS[t.table].source} ${t.key}`));
  const { changes, positions } = await readArchive(s3, bucket, wanted);
  const out: TombstoneDifference[] = [];
  for (const t of tombstones) {
    const { source, key } = DIMENSIONS[t.table];
    // not yet in the archive: nothing to compare with (an inferred member's 0/0 records no event)
    if (t.lsn !== '0/0' && !positions.has(positionOf(t.lsn, t.pos))) continue;
    const before = (changes.get(`${source} ${t.key}`) ?? []).filter(
      (c) => compareLsn(c.source.lsn, t.lsn) < 0 || (compareLsn(c.source.lsn, t.lsn) === 0 && c.source.pos < t.pos),
    );
    const values = valuesBefore(before);
    // the dimension's own columns, named as in the source (others are derived by joins, checked with the live rows)
    const expected = Object.fromEntries(Object.keys(t.row).flatMap((c) => (c !== key && c in values ? [[c, values[c]]] : [])));
    if (before.length === 0) for (const c of Object.keys(t.row)) if (c !== key) expected[c] = null;
    for (const [c, v] of Object.entries(expected)) if (isSealed(v as string)) expected[c] = await sealed.open(v as string, `${t.table} ${t.key}'s ${c}`);
    out.push(...differing(t.table, t.key, expected, t.row));
  }
  return out;
}

/** The row's values after `changes` (in stream order), a delete leaving those it ended. */
function valuesBefore(changes: ChangeEvent[]): Record<string, unknown> {
  let values: Record<string, unknown> = {};
  for (const c of changes) if (c.op !== 'd') values = { ...Object.fromEntries((c.unchanged ?? []).map((u) => [u, values[u]])), ...c.after };
  return values;
}

/**
 * The archive's changes to the `wanted` rows ("<source table> <key>"), each key's in stream
 * order, once however often delivered; and the position (lsn:pos) of every delete and end it
 * holds. A change too big for a record is read from the object its pointer names.
 */
async function readArchive(s3: S3Client, bucket: string, wanted: Set<string>): Promise<{ changes: Map<string, ChangeEvent[]>; positions: Set<string> }> {
  const byRow = new Map<string, Map<string, ChangeEvent>>();
  const positions = new Set<string>();
  const add = (e: ChangeEvent) => {
    const row = `${e.table} ${Object.values(e.key)[0]}`;
    if (!wanted.has(row)) return;
    if (!byRow.has(row)) byRow.set(row, new Map());
    byRow.get(row)!.set(positionOf(e.source.lsn, e.source.pos), e);
  };
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: RAW_PREFIX, ContinuationToken: token }));
    for (const o of page.Contents ?? []) {
      const body = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key }))).Body!.transformToByteArray();
      for (const line of (await gunzipAsync(body)).toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        let event: StreamEvent;
        try {
          event = decodeEvent(line);
        } catch {
          continue; // a line that is no event ends no row
        }
        if (event.kind === 'truncate' || event.kind === 'snapshot-range' || (event.kind === 'change' && event.op === 'd'))
          positions.add(positionOf(event.source.lsn, event.source.pos));
        if (event.kind === 'change') add(event);
        else if (event.kind === 'pointer' && wanted.has(`${event.table} ${Object.values(event.key)[0]}`)) {
          const big = await s3.send(new GetObjectCommand({ Bucket: event.object.bucket, Key: event.object.key }));
          const change = decodeEvent(await big.Body!.transformToString('utf8'));
          if (change.kind === 'change') add(change);
        }
      }
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  const changes = new Map<string, ChangeEvent[]>();
  for (const [row, versions] of byRow)
    changes.set(
      row,
      [...versions.values()].sort((a, b) => compareLsn(a.source.lsn, b.source.lsn) || a.source.pos - b.source.pos),
    );
  return { changes, positions };
}

/**
 * The fact ends, and with an archive the dimension tombstones (their sealed values opened with
 * the key store in `keys`): settled rows, checked once after the live rows.
 */
export async function checkTombstones(
  warehouse: pg.ClientBase,
  archive?: { bucket: string; s3Endpoint?: string },
  keys?: KeyStoreAt,
): Promise<TombstoneDifference[]> {
  const out = await checkFactEnds(warehouse);
  if (!archive) return out;
  const s3 = s3Client({ s3Endpoint: archive.s3Endpoint });
  const sealed = new SealedValues(keys);
  try {
    return [...out, ...(await checkDimensionTombstones(warehouse, s3, archive.bucket, sealed))];
  } finally {
    s3.destroy();
    sealed.close();
  }
}
