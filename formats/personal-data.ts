/**
 * Personal data: the one declaration of which source columns hold it, whose it is, and where
 * it lands in the warehouse; and the sealed form a personal value takes everywhere between the
 * source and the warehouse (the stream's records, the raw archive, claim-check objects,
 * micro-batches, dead letters).
 *
 * Crypto-shredding: each data subject (a staff member, a counterparty's contacts) has a data key
 * of their own (stores/subject-keys.ts). A personal value is sealed under it before it leaves
 * capture and opened only where it enters the warehouse. Destroying the key leaves every
 * archived copy unreadable for good, however immutable the object that holds it.
 *
 * Decided (data-model.md §2, "Personal data"): staff first/last name and e-mail, counterparty
 * commercial and delivery contacts are personal. Address lines and phone numbers are not:
 * they belong to a business location (an address is a delivery location and a counterparty's
 * legal address at once; one is the legal address of 4 counterparties), so they have no one
 * data subject whose erasure could remove them, and dim_location and dim_counterparty need them
 * readable. A counterparty who is a sole trader is the exception data-model.md names; erasing
 * one means editing their address in the source, which the pipeline then carries as any change.
 * department.manager is a name too, but of no captured person's row: it is not carried to the
 * warehouse and is not declared here either (see docs/deploy.md).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { primaryKeyOf, type SourceTable } from './source-tables.ts';
import type { Row, Value } from './change-event.ts';

/** Whose personal data a row holds: one data key per subject. */
export type SubjectKind = 'staff' | 'counterparty';
export interface Subject {
  kind: SubjectKind;
  /** The source row's primary key (staff_id, counterparty_id). */
  id: number;
}

/**
 * The personal columns of each source table, the kind of subject their row's key names, and
 * the warehouse column each lands in (null: the warehouse drops it; data-model.md §2).
 */
export const PERSONAL_DATA = {
  staff: {
    subject: 'staff',
    columns: { first_name: 'dim_staff.first_name', last_name: 'dim_staff.last_name', email_address: 'dim_staff.email_address' },
  },
  counterparty: {
    subject: 'counterparty',
    columns: { commercial_contact: null, delivery_contact: null },
  },
} as const satisfies Partial<Record<SourceTable, { subject: SubjectKind; columns: Record<string, `${string}.${string}` | null> }>>;

const PERSONAL_COLUMNS = new Map<string, readonly string[]>(Object.entries(PERSONAL_DATA).map(([table, d]) => [table, Object.keys(d.columns)]));

/** The personal columns of `table` (none for most). */
export function personalColumnsOf(table: SourceTable): readonly string[] {
  return PERSONAL_COLUMNS.get(table) ?? [];
}

/** The subject a row of `table` with this key belongs to, or null when the table holds no personal data. */
export function subjectOf(table: SourceTable, key: Row): Subject | null {
  const d = (PERSONAL_DATA as Partial<Record<SourceTable, { subject: SubjectKind }>>)[table];
  return d ? { kind: d.subject, id: key[primaryKeyOf(table)] as number } : null;
}

export const subjectName = (s: Subject): string => `${s.kind}:${s.id}`;

/** What a personal value reads as in the warehouse once its subject's key is destroyed. */
export const ERASED = '[erased]';

/**
 * A sealed value: `pd1:<kind>:<id>:<key version>:<base64 of iv | ciphertext | tag>`, AES-256-GCM
 * with the header as associated data, so a value cannot be passed off as another subject's.
 * It names its subject and key version, so whatever opens it needs nothing but the key store.
 */
const PREFIX = 'pd1:';
const SEALED_FORM = 'pd1:(staff|counterparty):(\\d+):(\\d+):([A-Za-z0-9+/=]+)';
const SEALED = new RegExp(`^${SEALED_FORM}$`);
/** Sealed values inside free text (a dead letter's reason, a malformed line): for String.match. */
export const SEALED_IN_TEXT = new RegExp(SEALED_FORM, 'g');
const IV_BYTES = 12;
const TAG_BYTES = 16;

export function isSealed(value: Value): value is string {
  return typeof value === 'string' && value.startsWith(PREFIX);
}

/**
 * Random IVs, drawn from the system's generator a pool at a time (one call per IVS_DRAWN
 * values, not one per value), each slice used once. GCM must never see an IV twice under one
 * key; 96 random bits per value keep that as likely as with one call each (NIST SP 800-38D
 * §8.3 allows 2^32 random IVs per key; a subject's key seals far fewer values).
 */
const IVS_DRAWN = 1024;
let ivPool = Buffer.alloc(0);
let ivNext = 0;
function nextIv(): Buffer {
  if (ivNext === ivPool.length) {
    ivPool = randomBytes(IV_BYTES * IVS_DRAWN);
    ivNext = 0;
  }
  ivNext += IV_BYTES;
  return ivPool.subarray(ivNext - IV_BYTES, ivNext);
}

/** AES-256-GCM: iv | ciphertext | tag, with `aad` bound (this file's sealed values, and the local master key's wrapping). */
export function gcmSeal(key: Uint8Array, plain: Uint8Array, aad: string): Buffer {
  const iv = nextIv();
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad));
  return Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

/** What gcmSeal sealed; throws if the key, the bytes or `aad` differ. */
export function gcmOpen(key: Uint8Array, body: Uint8Array, aad: string): Buffer {
  const b = Buffer.from(body);
  const decipher = createDecipheriv('aes-256-gcm', key, b.subarray(0, IV_BYTES));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(b.subarray(b.length - TAG_BYTES));
  return Buffer.concat([decipher.update(b.subarray(IV_BYTES, b.length - TAG_BYTES)), decipher.final()]);
}

export function seal(text: string, subject: Subject, version: number, key: Uint8Array): string {
  const header = `${PREFIX}${subject.kind}:${subject.id}:${version}`;
  return `${header}:${gcmSeal(key, Buffer.from(text, 'utf8'), header).toString('base64')}`;
}

export interface SealedValue {
  subject: Subject;
  version: number;
  header: string;
  body: Buffer;
}

/** The parts of a sealed value; an Error if it is not one. */
export function parseSealed(value: string): SealedValue {
  const m = SEALED.exec(value);
  if (!m) throw new Error('not a sealed personal value');
  return {
    subject: { kind: m[1] as SubjectKind, id: Number(m[2]) },
    version: Number(m[3]),
    header: value.slice(0, value.length - m[4].length - 1),
    body: Buffer.from(m[4], 'base64'),
  };
}

/** The clear text of a sealed value under its key, or ERASED when the key is gone (null). A wrong key or altered bytes throw. */
export function unseal(sealed: SealedValue, key: Uint8Array | null): string {
  return key === null ? ERASED : gcmOpen(key, sealed.body, sealed.header).toString('utf8');
}
