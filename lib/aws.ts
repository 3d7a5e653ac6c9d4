/**
 * AWS clients for both worlds. With an endpoint (the local stack: kinesalite, s3rver) they use
 * HTTP/1.1 (both emulators fail on the SDK's default HTTP/2 handler), path-style S3 and
 * checksums only when required (s3rver stores aws-chunked framing verbatim otherwise).
 *
 * Every call is bounded: a request with no response within its timeout, or a socket silent that
 * long mid-body, is destroyed and fails as a TimeoutError, which the SDK's retry takes up
 * (@smithy/node-http-handler only logs a warning at `requestTimeout` unless
 * `throwOnRequestTimeout` is set).
 */
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';

export interface AwsEndpoints {
  region?: string;
  kinesisEndpoint?: string;
  s3Endpoint?: string;
  /** The bound on one request (defaults: Kinesis 30 s, S3 60 s). */
  requestTimeoutMs?: number;
}

function boundedHandler(requestTimeoutMs: number): NodeHttpHandler {
  return new NodeHttpHandler({ connectionTimeout: 5_000, requestTimeout: requestTimeoutMs, socketTimeout: requestTimeoutMs, throwOnRequestTimeout: true });
}

const LOCAL_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export function kinesisClient(e: AwsEndpoints): KinesisClient {
  return new KinesisClient({
    region: e.region ?? process.env.AWS_REGION ?? 'eu-west-2',
    ...(e.kinesisEndpoint ? { endpoint: e.kinesisEndpoint, credentials: LOCAL_CREDENTIALS } : {}),
    requestHandler: boundedHandler(e.requestTimeoutMs ?? 30_000),
  });
}

export function s3Client(e: AwsEndpoints): S3Client {
  return new S3Client({
    region: e.region ?? process.env.AWS_REGION ?? 'eu-west-2',
    ...(e.s3Endpoint
      ? {
          endpoint: e.s3Endpoint,
          credentials: LOCAL_CREDENTIALS,
          forcePathStyle: true,
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
        }
      : {}),
    requestHandler: boundedHandler(e.requestTimeoutMs ?? 60_000),
  });
}
