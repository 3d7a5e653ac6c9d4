/**
 * The archive's layout and buffering: read by the CDK delivery stream and by the local
 * Firehose stand-in, so the ingestion bucket looks the same in both worlds.
 */
/** Every archived object's key starts with this (the Firehose prefix before its date). */
export const RAW_PREFIX = 'raw/';

export const ARCHIVE = {
  /** Firehose evaluates the !{timestamp:...} expression at delivery time (UTC). */
  prefix: `${RAW_PREFIX}!{timestamp:yyyy/MM/dd/HH}/`,
  errorPrefix: 'raw-errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/',
  /** Deliver when this much has arrived... */
  bufferSizeMiB: 5,
  /** ...or this long has passed since the first record of the buffer. */
  bufferIntervalSeconds: 60,
  compression: 'GZIP' as const,
};

/** Changes over the 1 MiB Kinesis record limit are stored under this prefix (stores/oversize-store.ts). */
export const OVERSIZE_PREFIX = 'oversize/';

/** Expand the prefix as Firehose does for a delivery at `at`. */
export function archivePrefixAt(at: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${RAW_PREFIX}${at.getUTCFullYear()}/${pad(at.getUTCMonth() + 1)}/${pad(at.getUTCDate())}/${pad(at.getUTCHours())}/`;
}
