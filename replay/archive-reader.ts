/**
 * Reading the raw archive: list its objects (in key order, which is Firehose's delivery order),
 * then fetch, gunzip (zlib's thread pool) and parse them a few at a time, handing them over
 * in key order. Only `concurrency` objects are read ahead of the consumer, so what is held
 * does not grow with the archive. Bad objects and lines are collected with their reason, not
 * thrown.
 */
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { RAW_PREFIX } from '../formats/archive-layout.ts';
import { decodeEvent, InvalidEventError } from '../formats/change-event.ts';
import { resolvePointer } from '../stores/oversize-store.ts';
import { keyed, type Keyed } from './reorder-window.ts';

const gunzipAsync = promisify(gunzip);

/** Firehose names objects by delivery time; an event is delivered this long after its commit at most (buffer interval plus retries). */
export const DELIVERY_LATENESS_MS = 60 * 60 * 1000;

export interface CorruptEntry {
  key: string;
  /** 1-based line of a bad event; null when the object itself cannot be read (gzip). */
  line: number | null;
  reason: string;
}

export interface ListedObject {
  key: string;
  /** Stored (compressed) size, from the listing. */
  bytes: number;
}

export interface ReadObject {
  key: string;
  bytes: number;
  /** Lines read, good or bad. */
  lines: number;
  events: Keyed[];
  corrupt: CorruptEntry[];
}

export interface ArchiveRange {
  /** Archive key prefix (default "raw/", the Firehose prefix before its date). */
  prefix?: string;
  /** Events committed at or after this instant... */
  from?: Date;
  /** ...and before this one. */
  to?: Date;
}

const hourPrefix = (prefix: string, at: Date) => `${prefix}${at.toISOString().slice(0, 13).replace(/[-T]/g, '/')}/`;

/** Objects in delivery (key) order; with a time range, only the hours that can hold it. */
export async function listArchive(s3: S3Client, bucket: string, range: ArchiveRange): Promise<ListedObject[]> {
  const prefix = range.prefix ?? RAW_PREFIX;
  // Delivery is never before commit, and at most DELIVERY_LATENESS_MS after it.
  const startAfter = range.from ? hourPrefix(prefix, range.from) : undefined;
  const lastHour = range.to ? hourPrefix(prefix, new Date(range.to.getTime() + DELIVERY_LATENESS_MS)) : undefined;
  const objects: ListedObject[] = [];
  let token: string | undefined;
  listing: do {
    const out = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, ...(startAfter && !token ? { StartAfter: startAfter } : {}) }),
    );
    for (const o of out.Contents ?? []) {
      if (lastHour && o.Key!.slice(0, lastHour.length) > lastHour) break listing;
      objects.push({ key: o.Key!, bytes: o.Size ?? 0 });
    }
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * The objects read and parsed, in the order given, `concurrency` fetched ahead of the consumer;
 * `onParsed` hears of each object's events as soon as they are in memory (read ahead or not).
 */
export async function* readArchive(
  s3: S3Client,
  bucket: string,
  objects: ListedObject[],
  concurrency: number,
  onParsed: (events: number) => void = () => undefined,
): AsyncGenerator<ReadObject> {
  const ahead: Promise<ReadObject>[] = [];
  let next = 0;
  const fill = () => {
    while (ahead.length < concurrency && next < objects.length) {
      const reading = readObject(s3, bucket, objects[next++].key).then((read) => {
        onParsed(read.events.length);
        return read;
      });
      reading.catch(() => undefined); // rethrown when its turn comes; not an unhandled rejection meanwhile
      ahead.push(reading);
    }
  };
  fill();
  while (ahead.length > 0) {
    const read = await ahead.shift()!;
    fill();
    yield read;
  }
}

async function readObject(s3: S3Client, bucket: string, key: string): Promise<ReadObject> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const body = await out.Body!.transformToByteArray();
  const read: ReadObject = { key, bytes: body.length, lines: 0, events: [], corrupt: [] };
  let text: string;
  try {
    text = (await gunzipAsync(body)).toString('utf8');
  } catch (err) {
    read.corrupt.push({ key, line: null, reason: `not readable as gzip: ${(err as Error).message}` });
    return read;
  }
  const lines = text.split('\n');
  // Every event ends in "\n", so the piece after the last one is empty.
  if (lines.at(-1) === '') lines.pop();
  read.lines = lines.length;
  for (let i = 0; i < lines.length; i++) {
    try {
      const event = decodeEvent(lines[i]);
      read.events.push(keyed(event.kind === 'pointer' ? await resolvePointer(s3, event) : event, key));
    } catch (err) {
      if (!(err instanceof InvalidEventError)) throw err;
      read.corrupt.push({ key, line: i + 1, reason: err.message });
    }
  }
  return read;
}
