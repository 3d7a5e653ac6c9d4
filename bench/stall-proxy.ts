/** A TCP proxy that can stop forwarding for a while: a stalled Kinesis, as the capture process sees it. */
import { createServer, connect, type Server, type Socket } from 'node:net';

export class StallProxy {
  private server: Server | null = null;
  private stalled = false;
  /** Forwarding held back while stalled, in arrival order. */
  private held: (() => void)[] = [];
  private readonly sockets = new Set<Socket>();

  constructor(private readonly targetPort: number) {}

  async listen(port: number): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
      }
      client.on('data', (d) => this.forward(() => upstream.write(d)));
      upstream.on('data', (d) => this.forward(() => client.write(d)));
      client.on('end', () => this.forward(() => upstream.end()));
      upstream.on('end', () => this.forward(() => client.end()));
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
  }

  private forward(send: () => void): void {
    if (this.stalled) this.held.push(send);
    else send();
  }

  stall(): void {
    this.stalled = true;
  }

  resume(): void {
    this.stalled = false;
    for (const send of this.held.splice(0)) send();
  }

  async close(): Promise<void> {
    this.resume();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
