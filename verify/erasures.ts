/**
 * Erased data subjects (`totes forget`): the truth is what the warehouse must hold given them,
 * so an erased staff member's name and e-mail are expected as the marker, not as the source
 * still has them. Read from the key store's bucket by this reader of its own (verify shares no
 * code with what it checks): an object `subjects/<kind>/<id>.json` whose `erasedAt` is set is
 * the store's record of an erasure. Counterparty contacts do not reach the warehouse.
 */
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { s3Client } from '../lib/aws.ts';
import { FatalError } from '../lib/fatal.ts';
import type pg from '../lib/pg.ts';

/** The warehouse's marker for an erased value, as docs/deploy.md promises analysts. */
export const ERASED_MARKER = '[erased]';

/** dim_staff's columns holding a staff member's personal values (data-model.md §2). */
export const ERASED_STAFF_COLUMNS = ['first_name', 'last_name', 'email_address'];

/** A subject's object in the key store: its key's version, the key wrapped (null once erased), and when it was erased. */
export interface SubjectObject {
  version: number;
  wrapped: string | null;
  wrappedBy: string;
  erasedAt: string | null;
}

/** The key store's object `key` (`subjects/<kind>/<id>.json`), or null when there is none. */
export async function readSubject(s3: S3Client, bucket: string, key: string): Promise<SubjectObject | null> {
  try {
    return JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToString('utf8')) as SubjectObject;
  } catch (err) {
    if ((err as Error).name === 'NoSuchKey') return null;
    throw err;
  }
}

/** The ids of erased staff members in the key store's bucket. */
export async function erasedStaff(where: { bucket: string; s3Endpoint?: string }): Promise<Set<string>> {
  const s3 = s3Client({ s3Endpoint: where.s3Endpoint });
  try {
    const erased = new Set<string>();
    let token: string | undefined;
    do {
      const page = await s3
        .send(new ListObjectsV2Command({ Bucket: where.bucket, Prefix: 'subjects/staff/', ContinuationToken: token }))
        .catch((err: Error) => {
          // a stack without a key store (values were never sealed): nobody was erased; a wrong name shows as the erased values' differences
          if (err.name === 'NoSuchBucket') return { Contents: [], IsTruncated: false, NextContinuationToken: undefined };
          throw err;
        });
      for (const { Key } of page.Contents ?? []) {
        const id = /^subjects\/staff\/(\d+)\.json$/.exec(Key!)?.[1];
        if (id && (await readSubject(s3, where.bucket, Key!))?.erasedAt) erased.add(id);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return erased;
  } finally {
    s3.destroy();
  }
}

/**
 * The erased staff members, read from the key store only when the warehouse's dim_staff (as
 * search_path finds it) holds the marker: a warehouse no erasure reached needs no key store,
 * so verify runs where there is none (a stack that never sealed values).
 */
export async function erasedStaffIn(warehouse: pg.Client, where: { bucket: string; s3Endpoint?: string } | undefined): Promise<Set<string>> {
  if (!where) return new Set();
  const marked = await warehouse.query(`SELECT 1 FROM dim_staff WHERE $1 IN (${ERASED_STAFF_COLUMNS.join(', ')}) LIMIT 1`, [ERASED_MARKER]);
  if (marked.rowCount === 0) return new Set();
  return erasedStaff(where).catch((err: Error) => {
    throw new FatalError(
      `could not read the erased data subjects in bucket "${where.bucket}" (${err.message}), which the warehouse's ${ERASED_MARKER} values need: give the key store's bucket with --keys-bucket (and --s3-endpoint locally)`,
    );
  });
}

/** The truth's dim_staff rows of erased staff members, their personal values replaced by the marker (nulls stay null). */
export function expectErased(rows: Map<string, Record<string, string | null>> | undefined, erased: Set<string>): void {
  for (const id of erased) {
    const row = rows?.get(id);
    if (row) for (const c of ERASED_STAFF_COLUMNS) if (row[c] !== null) row[c] = ERASED_MARKER;
  }
}
