/**
 * The archive's layout and buffering: read by the CDK delivery stream and by the local
 * Firehose stand-in, so the ingestion bucket looks the same in both worlds.
 */
export const ARCHIVE = {
  /** Firehose evaluates the !{timestamp:...} expression at delivery time (UTC). */
  prefix: 'raw/!{timestamp:yyyy/MM/dd/HH}/',
  errorPrefix: 'raw-errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/',
  /** Deliver when this much has arrived... */
  bufferSizeMiB: 5,
  /** ...or this long has passed since the first record of the buffer. */
  bufferIntervalSeconds: 60,
  compression: 'GZIP' as const,
};

/** Changes over the 1 MiB Kinesis record limit are stored under this prefix (archive/oversize-store.ts). */
export const OVERSIZE_PREFIX = 'oversize/';

/** Expand the prefix as Firehose does for a delivery at `at`. */
export function archivePrefixAt(at: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `raw/${at.getUTCFullYear()}/${pad(at.getUTCMonth() + 1)}/${pad(at.getUTCDate())}/${pad(at.getUTCHours())}/`;
}
