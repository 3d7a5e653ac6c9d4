/** Test helper: a TCP proxy to a server, to make it unreachable or silent and bring it back. */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { freePort } from '../local/servers.ts';

/** One proxied connection. While `silent` nothing passes either way, a close included; `closed` says one end closed meanwhile. */
interface Path {
  client: Socket;
  upstream: Socket;
  silent: boolean;
  closed: boolean;
}

/**
 * A TCP proxy that can drop every connection and refuse new ones, then come back on the same
 * port; or black-hole: stop forwarding bytes in both directions, closes included, with every
 * socket left open (a NAT idle timeout or a failover: no FIN, no RST). Bytes sent meanwhile stay
 * unread, as unacknowledged segments do, and arrive when the path comes back, as TCP
 * retransmits them.
 */
export async function startProxy(target: { host: string; port: number }) {
  const port = await freePort();
  const sockets = new Set<Socket>();
  const paths = new Set<Path>();
  let server: Server | null = null;
  let blackHoled = false;
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const forward = (path: Path) => {
    path.silent = false;
    if (path.closed) {
      paths.delete(path);
      path.client.destroy();
      path.upstream.destroy();
      return;
    }
    path.client.pipe(path.upstream);
    path.upstream.pipe(path.client);
  };
  const silence = (path: Path) => {
    path.silent = true;
    path.client.unpipe(path.upstream);
    path.upstream.unpipe(path.client);
    path.client.pause();
    path.upstream.pause();
  };
  return {
    port,
    async open() {
      server = createServer((client) => {
        const upstream = connect(target.port, target.host);
        track(client);
        track(upstream);
        const path: Path = { client, upstream, silent: true, closed: false };
        paths.add(path);
        const closed = (other: Socket) => () => {
          if (path.silent) return void (path.closed = true);
          paths.delete(path);
          other.destroy();
        };
        client.on('close', closed(upstream));
        upstream.on('close', closed(client));
        if (blackHoled) silence(path);
        else forward(path);
      });
      await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
    },
    async close() {
      for (const s of sockets) s.destroy();
      paths.clear();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server = null;
    },
    /** Forward nothing, on the connections open now and on new ones, and close nothing. */
    blackHole() {
      blackHoled = true;
      for (const path of paths) silence(path);
    },
    /**
     * Forward again: bytes held pass, closes held take effect. With `existing: 'silent'` the
     * connections black-holed so far stay so (their NAT mapping is gone for good) and only new
     * connections pass.
     */
    restore(existing: 'resume' | 'silent' = 'resume') {
      blackHoled = false;
      if (existing === 'silent') paths.clear();
      else for (const path of [...paths]) forward(path);
    },
  };
}
