/**
 * The capture service as a process (the Fargate task; `totes run capture` in compose):
 * configuration from the environment, an HTTP health endpoint (200 only while streaming: 503
 * at once while the source connection is being opened again),
 * metrics in EMF, and SIGTERM handling that drains, acknowledges and exits within a bound. A
 * failure to start is thrown (a SourceNotReady says what to fix, exit 3) for the entry to end
 * the process with one line.
 */
import { createServer, type Server } from 'node:http';
import { ConfigError, ENV, databaseUrl, optionalNumber, required } from '../lib/config.ts';
import { kinesisClient, s3Client } from '../lib/aws.ts';
import { OversizeStore } from '../stores/oversize-store.ts';
import { subjectKeysFrom } from '../stores/key-wrappers.ts';
import { EventSealer } from './event-sealer.ts';
import { log } from '../lib/log.ts';
import { ProgressWatch } from './capture-health.ts';
import { CaptureMetrics } from './capture-metrics.ts';
import { CaptureService, DEFAULT_CAPTURE_CONFIG } from './capture-service.ts';
import { KinesisSink } from './kinesis-sink.ts';
import type { readSlotHealth } from './slot-health.ts';

const STOP_BOUND_MS = 25_000;

export async function runCapture(env: Record<string, string | undefined> = process.env): Promise<void> {
  const sourceUrl = await databaseUrl(env, 'source');
  const streamName = required(env, ENV.streamName, 'the Kinesis data stream name');
  // changes over 1 MiB travel by claim check through the ingestion bucket, when it is named
  const oversizeBucket = env[ENV.ingestionBucket];
  const s3 = s3Client({ s3Endpoint: env[ENV.s3Endpoint] });
  const oversize = oversizeBucket ? new OversizeStore(s3, oversizeBucket) : undefined;
  const keys = subjectKeysFrom(env, s3);
  if (!keys) log.warn(`${ENV.keysBucket} is not set: personal values leave capture in the clear (formats/personal-data.ts)`);
  const sealer = keys ? new EventSealer(keys) : undefined;
  const sink = new KinesisSink({ client: kinesisClient({ kinesisEndpoint: env[ENV.kinesisEndpoint] }), streamName, oversize, sealer });
  const slotName = env[ENV.slotName] ?? DEFAULT_CAPTURE_CONFIG.slotName;
  const plugin = env[ENV.decoder] || DEFAULT_CAPTURE_CONFIG.plugin;
  if (plugin !== 'pgoutput' && plugin !== 'wal2json')
    throw new ConfigError(`${ENV.decoder}=${JSON.stringify(plugin)}: set it to pgoutput (the default) or wal2json`);
  const service = new CaptureService(
    {
      ...DEFAULT_CAPTURE_CONFIG,
      sourceUrl,
      slotName,
      plugin,
      publicationName: env[ENV.publication] ?? DEFAULT_CAPTURE_CONFIG.publicationName,
      heartbeatMs: optionalNumber(env, ENV.heartbeatSeconds, 10) * 1000,
      silenceMs: optionalNumber(env, ENV.sourceSilenceSeconds, DEFAULT_CAPTURE_CONFIG.silenceMs / 1000) * 1000,
    },
    sink,
  );
  const progress = new ProgressWatch(optionalNumber(env, ENV.maxHealthyLagSeconds, 300));
  let health: Awaited<ReturnType<typeof readSlotHealth>> = { lagBytes: 0, walStatus: 'unknown', safeWalSize: null };

  const server: Server = createServer((req, res) => {
    const { healthy, reason, secondsSinceProgress } = progress.check({
      state: service.metrics.state,
      acceptedThrough: sink.acceptedThrough,
      heartbeats: service.metrics.heartbeats,
      walStatus: health.walStatus,
    });
    res.writeHead(req.url === '/health' ? (healthy ? 200 : 503) : 404, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        healthy,
        reason,
        secondsSinceProgress,
        lagSeconds: service.lagSeconds(),
        snapshotPending: service.snapshotPending,
        ...service.metrics,
        slot: health,
      }),
    );
  }).listen(optionalNumber(env, ENV.healthPort, 8080));

  // At start and every minute, even when the source does not answer: then SourceUnreachable says
  // so (capture-metrics.ts). At start, so a restarted task's figures resume within seconds.
  const metrics = new CaptureMetrics({ service, sink, sourceUrl, slotName });
  const emitMetrics = async () => {
    health = (await metrics.emit()) ?? health;
  };
  void emitMetrics();
  const metricsTimer = setInterval(emitMetrics, 60_000);

  const stop = async (signal: string) => {
    log.info({ signal }, 'stopping: draining in-flight records');
    const timeout = setTimeout(() => {
      log.error('stop bound exceeded; exiting');
      process.exit(1);
    }, STOP_BOUND_MS);
    await service.stop();
    clearTimeout(timeout);
    clearInterval(metricsTimer);
    server.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  await service.run();
}
