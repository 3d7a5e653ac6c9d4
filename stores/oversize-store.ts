/**
 * Changes larger than a Kinesis record (1 MiB) travel by claim check: the event is written to
 * the ingestion bucket under oversize/, named by its (lsn, pos), and a pointer goes through the
 * stream in its place. The object is immutable like the rest of the archive; a capture restart
 * that sends the same change again finds it already there.
 */
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { OVERSIZE_PREFIX } from '../formats/archive-layout.ts';
import { putOnce } from './put-once.ts';
import { decodeEvent, InvalidEventError, lsnToBigInt, type ChangeEvent, type PointerEvent } from '../formats/change-event.ts';

export class OversizeStore {
  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
  ) {}

  keyFor(event: ChangeEvent): string {
    return `${OVERSIZE_PREFIX}${event.table}/${lsnToBigInt(event.source.lsn).toString(16).padStart(16, '0')}-${event.source.pos}.json`;
  }

  /** Store the encoded event (once) and return the pointer to send instead. */
  async put(event: ChangeEvent, encoded: string): Promise<PointerEvent> {
    const key = this.keyFor(event);
    await putOnce(this.s3, this.bucket, key, encoded, 'application/json');
    return {
      v: 1,
      kind: 'pointer',
      table: event.table,
      key: event.key,
      object: { bucket: this.bucket, key, bytes: Buffer.byteLength(encoded) },
      source: event.source,
    };
  }
}

/** The change a pointer stands for; InvalidEventError if the object is not that change. */
export async function resolvePointer(s3: S3Client, pointer: PointerEvent): Promise<ChangeEvent> {
  const out = await s3.send(new GetObjectCommand({ Bucket: pointer.object.bucket, Key: pointer.object.key }));
  const event = decodeEvent(Buffer.from(await out.Body!.transformToByteArray()).toString('utf8'));
  if (event.kind !== 'change' || event.source.lsn !== pointer.source.lsn || event.source.pos !== pointer.source.pos) {
    throw new InvalidEventError(`object ${pointer.object.key} does not hold the change its pointer names`);
  }
  return event;
}
