declare module 'kinesalite' {
  import type { Server } from 'node:http';
  export default function kinesalite(options?: {
    createStreamMs?: number;
    deleteStreamMs?: number;
    updateStreamMs?: number;
    shardLimit?: number;
    path?: string;
  }): Server;
}
declare module 's3rver' {
  export default class S3rver {
    constructor(options: {
      port?: number;
      address?: string;
      directory: string;
      silent?: boolean;
      configureBuckets?: { name: string }[];
      resetOnClose?: boolean;
    });
    run(): Promise<{ address: string; port: number }>;
    close(): Promise<void>;
    /** Its filesystem store (lib/stores/filesystem.js): local/servers.ts makes its PUT atomic. */
    store: S3rverStore;
  }
  export interface S3rverObject {
    bucket: string;
    key: string;
    content: Buffer | AsyncIterable<Buffer>;
    metadata: Record<string, string>;
  }
  export interface S3rverStore {
    putObject(object: S3rverObject): Promise<{ size: number; md5: string }>;
    getResourcePath(bucket: string, key: string, resource: string): string;
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5: string): Promise<void>;
  }
}
