/**
 * Local stand-in for the Firehose delivery stream (no emulator exists): reads the Kinesis
 * stream, buffers by size and time, and writes GZIP objects of the records concatenated as
 * they are (each event ends in "\n", so objects are NDJSON), named as Firehose names them:
 *   raw/YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>.gz
 * Like the real service it takes records off the stream once buffered; `deliveredThrough` says
 * how far each shard is in the archive, so the poller's durable checkpoint never passes a record
 * a crash would lose from the buffer. stop() and deliverNow() deliver what is buffered.
 */
import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { KinesisStreamEvent } from 'aws-lambda';
import { ARCHIVE, archivePrefixAt } from '../formats/archive-layout.ts';

export interface FirehoseStandinOptions {
  s3: S3Client;
  bucket: string;
  deliveryStreamName: string;
  bufferSizeBytes?: number;
  bufferIntervalMs?: number;
}

export class FirehoseStandin {
  objects = 0;
  records = 0;
  private buffer: Buffer[] = [];
  /** The shard and sequence number of the newest record in the buffer, per shard. */
  private buffered = new Map<string, string>();
  private delivered = new Map<string, string>();
  private bytes = 0;
  private firstAt = 0;

  constructor(private readonly opts: FirehoseStandinOptions) {}

  /** Poller consumer: buffer the batch, deliver when full or old enough. */
  readonly consume = async (event: KinesisStreamEvent): Promise<void> => {
    for (const r of event.Records) {
      const data = Buffer.from(r.kinesis.data, 'base64');
      if (this.buffer.length === 0) this.firstAt = Date.now();
      this.buffer.push(data);
      this.bytes += data.length;
      this.buffered.set(r.eventID.split(':')[0], r.kinesis.sequenceNumber);
    }
    await this.deliver();
  };

  private ticker: NodeJS.Timeout | null = null;

  /** The last record of `shard` now in the archive. */
  readonly deliveredThrough = (shard: string): string | undefined => this.delivered.get(shard);

  /** Deliver on the interval even when no new records arrive. */
  start(): void {
    this.ticker = setInterval(() => void this.deliver().catch(() => undefined), 500);
  }

  /** Deliver what is buffered now (a closed shard read to its end: its children wait on it). */
  readonly deliverNow = (): Promise<void> => this.deliver(true);

  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    await this.deliver(true);
  }

  private due(): boolean {
    const size = this.opts.bufferSizeBytes ?? ARCHIVE.bufferSizeMiB * 1024 * 1024;
    const interval = this.opts.bufferIntervalMs ?? ARCHIVE.bufferIntervalSeconds * 1000;
    return this.bytes >= size || Date.now() - this.firstAt >= interval;
  }

  async deliver(force = false): Promise<void> {
    if (this.buffer.length === 0 || (!force && !this.due())) return;
    const at = new Date();
    const stamp = at.toISOString().slice(0, 19).replace(/[T:]/g, '-');
    const key = `${archivePrefixAt(at)}${this.opts.deliveryStreamName}-1-${stamp}-${randomUUID()}.gz`;
    // Take the buffer before the PUT: records consumed while it is in flight start the next one.
    const records = this.buffer;
    const through = this.buffered;
    this.buffer = [];
    this.buffered = new Map();
    this.bytes = 0;
    try {
      await this.opts.s3.send(
        new PutObjectCommand({
          Bucket: this.opts.bucket,
          Key: key,
          Body: gzipSync(Buffer.concat(records)),
          ContentEncoding: 'gzip',
          ContentType: 'application/x-ndjson',
        }),
      );
    } catch (err) {
      this.buffer = records.concat(this.buffer);
      this.bytes = this.buffer.reduce((n, b) => n + b.length, 0);
      for (const [shard, seq] of through) if (!this.buffered.has(shard)) this.buffered.set(shard, seq);
      throw err;
    }
    for (const [shard, seq] of through) this.delivered.set(shard, seq);
    this.objects++;
    this.records += records.length;
  }
}
