import * as net from 'node:net';

/** A TCP proxy on a free loopback port in front of the server; `cut()` drops every connection
 *  through it at once, as a network failure would, and `freeze()` makes them silent without
 *  closing them, as a dead Wi-Fi link does. New connections still go through. */
export class CuttableProxy {
  private sockets = new Set<net.Socket>();
  /** Sockets whose bytes are dropped from now on. */
  private frozen = new Set<net.Socket>();
  private server: net.Server;
  port = 0;
  /** Connections accepted so far. */
  accepted = 0;
  /** While set, new connections are closed at once, as a server that is down refuses them. */
  refusing = false;

  private constructor(target: URL) {
    this.server = net.createServer((client) => {
      if (this.refusing) {
        client.destroy();
        return;
      }
      this.accepted += 1;
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
        this.sockets.add(a);
        a.on('error', () => b.destroy());
        a.on('close', () => {
          this.sockets.delete(a);
          this.frozen.delete(a);
          b.destroy();
        });
        a.on('data', (chunk) => {
          if (!this.frozen.has(a)) b.write(chunk);
        });
      }
    });
  }

  static async start(targetUrl: string): Promise<CuttableProxy> {
    const proxy = new CuttableProxy(new URL(targetUrl));
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    proxy.port = (proxy.server.address() as net.AddressInfo).port;
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  freeze() {
    for (const s of this.sockets) this.frozen.add(s);
  }

  cut() {
    for (const s of this.sockets) s.destroy();
  }

  async stop() {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
