/**
 * Test helper: every fact version accounted for. From the change events a stream carried (the
 * archive, or what a capture saw), the (lsn, pos) of each version the warehouse must hold, and
 * what the warehouse does hold, duplicates included.
 */
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { compareEventIds, decodeEvent, lsnToBigInt, type ChangeEvent, type StreamEvent } from '../formats/change-event.ts';
import { RAW_PREFIX } from '../formats/archive-layout.ts';
import { FACT_TABLES, LOAD_TABLES } from '../formats/load-tables.ts';
import type pg from '../lib/pg.ts';
import { mapEvent, targetOf } from '../processors/transform.ts';

const versionId = (lsn: string, pos: number) => `${lsnToBigInt(lsn)}:${pos}`;

/** Every event in the archive the Firehose stand-in wrote, copies included. */
export async function archivedEvents(s3: S3Client, bucket: string): Promise<StreamEvent[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: RAW_PREFIX, ContinuationToken: token }));
    for (const o of out.Contents ?? []) keys.push(o.Key!);
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  const events: StreamEvent[] = [];
  for (const key of keys) {
    const body = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray();
    for (const line of gunzipSync(body).toString('utf8').split('\n')) if (line) events.push(decodeEvent(line));
  }
  return events;
}

/**
 * Per fact id ("table:id"), the versions the warehouse must hold: one per insert, update and
 * delete, and one per snapshot read that shows a state the version before it did not.
 */
export function expectedFactVersions(events: StreamEvent[]): Map<string, Set<string>> {
  const distinct = new Map<string, ChangeEvent>();
  for (const e of events) if (e.kind === 'change') distinct.set(`${e.table}:${versionId(e.source.lsn, e.source.pos)}`, e);
  const expected = new Map<string, Set<string>>();
  const previous = new Map<string, ChangeEvent>();
  const business = (e: ChangeEvent) => {
    const { row } = mapEvent(e);
    return JSON.stringify(Object.keys(LOAD_TABLES[targetOf(e.table)].columns).map((c) => row[c]));
  };
  for (const e of [...distinct.values()].sort((a, b) => compareEventIds(a.source, b.source))) {
    const table = targetOf(e.table);
    if (LOAD_TABLES[table].kind !== 'fact') continue;
    const id = `${table}:${mapEvent(e).row[LOAD_TABLES[table].key]}`;
    const prev = previous.get(id);
    previous.set(id, e);
    if (e.op === 'r' && prev && prev.op !== 'd' && business(prev) === business(e)) continue;
    if (!expected.has(id)) expected.set(id, new Set());
    expected.get(id)!.add(versionId(e.source.lsn, e.source.pos));
  }
  return expected;
}

/** Per fact id, the (lsn, pos) of every version the warehouse holds, and the ids holding one twice. */
export async function warehouseFactVersions(db: Pick<pg.Client, 'query'>): Promise<{ versions: Map<string, Set<string>>; duplicated: string[] }> {
  const versions = new Map<string, Set<string>>();
  const duplicated: string[] = [];
  for (const table of FACT_TABLES) {
    const key = LOAD_TABLES[table].key;
    const { rows } = await db.query(`SELECT ${key} AS id, source_lsn::text AS lsn, source_pos AS pos FROM ${table}`);
    for (const r of rows) {
      const id = `${table}:${r.id}`;
      const v = versionId(r.lsn, r.pos);
      if (!versions.has(id)) versions.set(id, new Set());
      if (versions.get(id)!.has(v)) duplicated.push(`${id}@${v}`);
      versions.get(id)!.add(v);
    }
  }
  return { versions, duplicated };
}

/** The fact ids whose versions differ between the two, with what each holds. */
export function versionDifferences(expected: Map<string, Set<string>>, found: Map<string, Set<string>>): string[] {
  const ids = [...new Set([...expected.keys(), ...found.keys()])].sort();
  const show = (s: Set<string> | undefined) => [...(s ?? [])].sort().join(' ');
  return ids
    .filter((id) => show(expected.get(id)) !== show(found.get(id)))
    .map((id) => `${id}: expected [${show(expected.get(id))}], found [${show(found.get(id))}]`);
}
