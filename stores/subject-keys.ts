/**
 * The key store for personal data (formats/personal-data.ts): one AES-256 data key per data
 * subject, created on first use, deletable for good. A bucket of its own, without Object Lock or
 * versioning (on AWS the stack's key bucket; locally a bucket on s3rver), holds one object per
 * subject, `subjects/<kind>/<id>.json`: the key's version and the key wrapped by a master key
 * (KMS on AWS, a local master key file locally; wrappers.ts). The data key itself is never
 * stored in the clear.
 *
 * Deleting a key overwrites the object with a tombstone that keeps only the version and when it
 * was erased: the wrapped key is gone (the bucket keeps no old versions), so is every value
 * sealed under it, and the tombstone is the store's record of the erasure (the erasure
 * register). An erased subject never gets a key again: a later change of their row is sealed
 * as erased, so neither capture nor a replay can bring their values back.
 *
 * Keys are cached in memory for KEY_CACHE_MS: a process that used a key before its deletion
 * can still seal and open values under it for at most that long afterwards.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { isSealed, parseSealed, type SealedValue, type Subject, subjectName, unseal } from '../formats/personal-data.ts';
import type { Value } from '../formats/change-event.ts';
import { randomBytes } from 'node:crypto';
import { ConfigError, ENV } from '../lib/config.ts';

/** How long a key read from the store is used without reading it again. */
export const KEY_CACHE_MS = 60_000;

/** Wraps data keys under a master key that never leaves it (KMS, or a local key file). */
export interface KeyWrapper {
  /** Names the master key in each subject's object, so a store is never read with another. */
  readonly name: string;
  wrap(key: Uint8Array, context: string): Promise<Uint8Array>;
  unwrap(wrapped: Uint8Array, context: string): Promise<Uint8Array>;
}

/** A subject's object: the key wrapped, or a tombstone (wrapped null) once erased. */
export interface SubjectRecord {
  subject: string;
  version: number;
  wrapped: string | null;
  wrappedBy: string;
  createdAt: string;
  erasedAt: string | null;
}

interface Cached {
  record: SubjectRecord | null;
  etag: string | undefined;
  key: Promise<Uint8Array> | null;
  /** The key once unwrapped, for callers that cannot wait (currentCached). */
  unwrapped?: Uint8Array;
}

/** A cached read: `done` once it has answered, so a hit needs no await. */
interface CacheEntry {
  until: number;
  loading: Promise<Cached>;
  done?: Cached;
}

export interface CurrentKey {
  version: number;
  key: Uint8Array;
}

const PREFIX = 'subjects/';
const objectKey = (s: Subject) => `${PREFIX}${s.kind}/${s.id}.json`;
const httpStatus = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

export class SubjectKeys {
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
    private readonly wrapper: KeyWrapper,
    private readonly cacheMs = KEY_CACHE_MS,
  ) {}

  /** The subject's current key (created on first use), or null once the subject is erased. */
  async current(subject: Subject): Promise<CurrentKey | null> {
    let entry = await this.entry(subject);
    if (entry.record?.erasedAt) return null;
    if (!entry.record) entry = await this.create(subject);
    if (!entry.record?.wrapped) return null; // erased by another writer meanwhile
    return { version: entry.record.version, key: await entry.key! };
  }

  /**
   * What current() answers, without waiting, when the cache holds it (capture's hot path: a
   * promise per change costs more than the sealing); undefined when it does not (never read,
   * past its time, no key yet), and current() must be asked.
   */
  currentCached(subject: Subject): CurrentKey | null | undefined {
    const hit = this.cache.get(subjectName(subject));
    if (!hit?.done || hit.until <= Date.now()) return undefined;
    const { record, unwrapped } = hit.done;
    if (record?.erasedAt) return null;
    return record && unwrapped ? { version: record.version, key: unwrapped } : undefined;
  }

  /** The key a value was sealed under, or null when it is destroyed. */
  async keyOf(subject: Subject, version: number): Promise<Uint8Array | null> {
    let entry = await this.entry(subject);
    // a key newer than the cached record was created since it was read
    if (!entry.record || entry.record.version < version) entry = await this.entry(subject, true);
    return entry.record?.version === version && entry.key ? entry.key : null;
  }

  /** The clear text of a sealed value, or ERASED when its key is destroyed. */
  async open(value: string): Promise<string> {
    const sealed = parseSealed(value);
    return unseal(sealed, await this.keyOf(sealed.subject, sealed.version));
  }

  /**
   * Erases the subject: destroys their key if they have one (destroyed: true) and leaves the
   * tombstone, also for a subject the store has no key of yet, so none is made later. Erasing
   * again changes nothing and answers with the first erasure's time.
   */
  async deleteKey(subject: Subject): Promise<{ destroyed: boolean; erasedAt: string }> {
    const entry = await this.entry(subject, true);
    if (entry.record?.erasedAt) return { destroyed: false, erasedAt: entry.record.erasedAt };
    const erasedAt = new Date().toISOString();
    const tombstone: SubjectRecord = entry.record
      ? { ...entry.record, wrapped: null, erasedAt }
      : { subject: subjectName(subject), version: 0, wrapped: null, wrappedBy: this.wrapper.name, createdAt: erasedAt, erasedAt };
    try {
      await this.put(subject, tombstone, entry.record ? { IfMatch: entry.etag } : { IfNoneMatch: '*' });
    } catch (err) {
      if (httpStatus(err) !== 412) throw err;
      return this.deleteKey(subject); // a key was made or erased meanwhile: erase what is there now
    }
    this.cache.delete(subjectName(subject));
    return { destroyed: entry.record !== null, erasedAt };
  }

  /** The subject's record as the store holds it now (not cached), or null if it has none. */
  async record(subject: Subject): Promise<SubjectRecord | null> {
    return (await this.entry(subject, true)).record;
  }

  /** Every subject the store knows, keyed or erased. */
  async listSubjects(): Promise<SubjectRecord[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: PREFIX, ContinuationToken: token }));
      for (const o of page.Contents ?? []) keys.push(o.Key!);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const records = await Promise.all(keys.map((k) => this.read(k)));
    return records.flatMap((r) => (r ? [r.record] : []));
  }

  private entry(subject: Subject, fresh = false): Promise<Cached> {
    const name = subjectName(subject);
    const now = Date.now();
    const hit = this.cache.get(name);
    if (hit && !fresh && hit.until > now) return hit.loading;
    // keys past their time leave memory, not only use
    for (const [n, c] of this.cache) if (c.until <= now) this.cache.delete(n);
    return this.remember(
      name,
      this.read(objectKey(subject)).then((found) => this.cached(subject, found?.record ?? null, found?.etag, hit?.done)),
    );
  }

  private remember(name: string, loading: Promise<Cached>): Promise<Cached> {
    const entry: CacheEntry = { until: Date.now() + this.cacheMs, loading };
    this.cache.set(name, entry);
    loading.then(
      (done) => {
        entry.done = done;
      },
      () => this.cache.get(name) === entry && this.cache.delete(name),
    );
    return loading;
  }

  /**
   * A record read, its key unwrapped, or taken from the previous read of the same record: the
   * store is read again each KEY_CACHE_MS (so an erasure is seen), the master key (a KMS call on
   * AWS) asked only when the wrapped key changed.
   */
  private cached(subject: Subject, record: SubjectRecord | null, etag: string | undefined, previous?: Cached): Cached {
    const same = previous?.key && previous.record?.wrapped === record?.wrapped && previous.record?.version === record?.version;
    const key = !record?.wrapped
      ? null
      : same
        ? previous.key
        : this.wrapper.unwrap(Buffer.from(record.wrapped, 'base64'), `${subjectName(subject)}:${record.version}`);
    const entry: Cached = { record, etag, key, unwrapped: same ? previous.unwrapped : undefined };
    key?.then(
      (k) => {
        entry.unwrapped = k;
      },
      () => undefined, // seen by whoever awaits it
    );
    return entry;
  }

  /**
   * The subject's first key. The put is conditional (on AWS), so two writers never both think
   * theirs is the key: the one that loses reads the winner's (or the tombstone of an erasure).
   */
  private async create(subject: Subject): Promise<Cached> {
    const version = 1;
    const key = randomBytes(32);
    const wrapped = await this.wrapper.wrap(key, `${subjectName(subject)}:${version}`);
    const record: SubjectRecord = {
      subject: subjectName(subject),
      version,
      wrapped: Buffer.from(wrapped).toString('base64'),
      wrappedBy: this.wrapper.name,
      createdAt: new Date().toISOString(),
      erasedAt: null,
    };
    try {
      await this.put(subject, record, { IfNoneMatch: '*' });
    } catch (err) {
      if (httpStatus(err) !== 412) throw err;
      return this.entry(subject, true);
    }
    const entry: Cached = { record, etag: undefined, key: Promise.resolve(key), unwrapped: key };
    this.remember(subjectName(subject), Promise.resolve(entry));
    return entry;
  }

  private async put(subject: Subject, record: SubjectRecord, condition: { IfMatch?: string; IfNoneMatch?: string }): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: objectKey(subject), Body: JSON.stringify(record), ContentType: 'application/json', ...condition }),
    );
  }

  private async read(key: string): Promise<{ record: SubjectRecord; etag: string | undefined } | null> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const record = JSON.parse(await out.Body!.transformToString('utf8')) as SubjectRecord;
      if (record.wrapped && record.wrappedBy !== this.wrapper.name)
        throw new Error(
          `${key} in bucket ${this.bucket} is wrapped by ${record.wrappedBy}, not ${this.wrapper.name}: the key store is read with another master key`,
        );
      return { record, etag: out.ETag };
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey' || httpStatus(err) === 404) return null;
      throw err;
    }
  }
}

/**
 * Every sealed value of these rows opened in place, where they enter the warehouse (the loader,
 * replay). A row without one costs a look at each value. The keys are looked up once per
 * subject and version, together, and the values opened without waiting on each. Without a key
 * store, a sealed value stops the load: it would otherwise reach the warehouse unreadable.
 */
export async function openRows(rows: Record<string, Value>[], keys: SubjectKeys | null): Promise<void> {
  const found: { row: Record<string, Value>; column: string; sealed: SealedValue; key: string }[] = [];
  const wanted = new Map<string, { subject: Subject; version: number }>();
  for (const row of rows)
    for (const column in row) {
      const value = row[column];
      if (!isSealed(value)) continue;
      if (!keys) throw new ConfigError(`a personal value (${column}) is sealed, but no key store is configured: set ${ENV.keysBucket} and the master key`);
      const sealed = parseSealed(value);
      const key = `${subjectName(sealed.subject)}:${sealed.version}`;
      if (!wanted.has(key)) wanted.set(key, { subject: sealed.subject, version: sealed.version });
      found.push({ row, column, sealed, key });
    }
  if (found.length === 0) return;
  const entries = [...wanted];
  const opened = await Promise.all(entries.map(([, w]) => keys!.keyOf(w.subject, w.version)));
  const keyByName = new Map(entries.map(([k], i) => [k, opened[i]]));
  for (const f of found) f.row[f.column] = unseal(f.sealed, keyByName.get(f.key)!);
}
