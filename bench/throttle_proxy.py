#!/usr/bin/env python3
"""bench/throttle_proxy.py: a TCP proxy that caps each connection's bandwidth
and adds latency, in front of a registry (see BENCHMARKS.md, "Throttled link").

Protocol-agnostic (it never parses HTTP): every accepted connection gets its
own upstream connection and its own token bucket, so N connections may move N
times the --rate, like a WAN link or a proxy that throttles per TCP flow.

- server -> client bytes are paced at --rate bytes/s per connection (token
  bucket refilled continuously, sent in slices of --quantum ms worth of bytes,
  so a 10 MB/s cap is 50 KB every 5 ms, not 10 MB once a second);
  client -> server bytes too with --up-rate;
- a new connection waits --latency ms before the proxy connects upstream (the
  TCP handshake's round trip), and each client -> server chunk that starts a
  request waits --latency ms before it is forwarded (the request's round
  trip). "Starts a request" = the first chunk of the connection, or the first
  one after the server sent anything: HTTP/1.1 without pipelining, as registry
  clients use it, alternates turns like that.

It listens on 127.0.0.1 (--port, default a free one), prints
"listening on 127.0.0.1:PORT" and writes PORT to --port-file (atomically) once
it accepts connections. SIGUSR1 writes counters as JSON to --stats (totals
since start, plus the peak of concurrent connections since the previous
SIGUSR1, which it resets); SIGTERM/SIGINT write them once more and exit.
--log FILE gets one line per closed connection; --trace FILE one line per
request (connection, when it reached the proxy, when its answer's first and
last bytes left, bytes), times in seconds since the proxy started.

Python 3 standard library only.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import sys
import time

READ_SIZE = 1 << 20  # large reads: few Python wake-ups per MB
IDLE = 0.001  # a read that waited longer found the link idle
UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_rate(text):
    """'10M', '10MB', '10MB/s', '9.5Mi', '1250000' -> bytes/s (k/M/G = powers
    of 1000, Ki/Mi/Gi of 1024). 0 means no cap."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]i?)?[bB]?(/s)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (say 10M, 10MB/s, 1.5Mi, 1250000)")
    return float(m.group(1)) * UNITS[(m.group(2) or "").lower()]


class Bucket:
    """Token bucket: `rate` bytes/s. Credit is saved up only while bytes keep
    coming (at most `burst` seconds' worth, so that the proxy catches up after
    being scheduled late); after the link was idle, the next bytes start with
    none (idle()), so a small response costs its size / rate like a large one."""

    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = burst
        self.paid_until = 0.0  # the time at which every byte taken so far is paid for

    def idle(self):
        self.paid_until = max(self.paid_until, time.monotonic())

    async def take(self, n):
        now = time.monotonic()
        if self.paid_until < now - self.burst:
            self.paid_until = now - self.burst
        self.paid_until += n / self.rate
        wait = self.paid_until - now
        if wait > 0:
            await asyncio.sleep(wait)
            return wait
        return 0.0


class Stats:
    def __init__(self):
        self.start = time.monotonic()
        self.connections = 0
        self.active = 0
        self.peak_active = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self.requests = 0
        self.upstream_failures = 0
        # Summed over connections, in seconds: time a server->client transfer
        # was in flight (bytes read from the server not yet all sent on), and
        # of that, time spent waiting for the bucket (paced by the cap) and
        # waiting for the client to take the bytes (drain: it is not reading).
        self.transfer_s = 0.0
        self.throttled_s = 0.0
        self.client_wait_s = 0.0
        self.in_flight = 0  # transfers in flight now
        self.since = time.monotonic()
        self.dumps = 0  # stats written so far (a reader waits for it to change)

    def flight(self, delta):
        now = time.monotonic()
        self.transfer_s += self.in_flight * (now - self.since)
        self.since = now
        self.in_flight += delta

    def opened(self):
        self.connections += 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)

    def snapshot(self):
        self.flight(0)
        t = os.times()
        return {
            "dumps": self.dumps,
            "uptime_s": round(time.monotonic() - self.start, 3),
            "cpu_s": round(t.user + t.system, 3),
            "connections": self.connections,
            "active": self.active,
            "peak_active": self.peak_active,
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up,
            "requests": self.requests,
            "upstream_failures": self.upstream_failures,
            "transfer_s": round(self.transfer_s, 3),
            "throttled_s": round(self.throttled_s, 3),
            "client_wait_s": round(self.client_wait_s, 3),
        }


class Proxy:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.latency = args.latency / 1000.0
        self.quantum = args.quantum / 1000.0
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.trace = open(args.trace, "a") if args.trace else None
        self.next_id = 0

    def slice_size(self, rate):
        # Bytes worth one quantum, at least 1 KiB (a very low rate still moves).
        return max(1024, int(rate * self.quantum)) if rate else READ_SIZE

    async def pump(self, conn, reader, writer, rate, down):
        """Moves one direction of a connection until EOF: server -> client
        (down) paced at `rate`; client -> server delayed at each request."""
        bucket = Bucket(rate, self.quantum * 2) if rate else None
        step = self.slice_size(rate)
        stats = self.stats
        try:
            while True:
                if down and conn["flying"]:
                    # All read so far is sent on: in flight again only once the
                    # server sends more (at once, while a body is streaming).
                    conn["flying"] = False
                    stats.flight(-1)
                t = time.monotonic()
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                if bucket and time.monotonic() - t > IDLE:
                    bucket.idle()  # we waited for the other end: no credit saved up meanwhile
                if down:
                    conn["flying"] = True
                    stats.flight(+1)
                    conn["turn"] = True  # the server answered: the next client chunk starts a request
                elif conn["turn"]:
                    conn["turn"] = False
                    self.traced(conn)
                    conn["req"] = [time.monotonic(), None, None, 0]
                    conn["requests"] += 1
                    stats.requests += 1
                    if self.latency:
                        await asyncio.sleep(self.latency)
                view = memoryview(data)
                for off in range(0, len(view), step):
                    part = view[off:off + step]
                    if bucket:
                        waited = await bucket.take(len(part))
                        if down:
                            stats.throttled_s += waited
                            conn["throttled_s"] += waited
                    writer.write(part)
                    t = time.monotonic()
                    await writer.drain()
                    if down:
                        stats.client_wait_s += time.monotonic() - t
                        conn["down"] += len(part)
                        req = conn["req"]
                        if req is not None:
                            now = time.monotonic()
                            if req[1] is None:
                                req[1] = now
                            req[2] = now
                            req[3] += len(part)
                        stats.bytes_down += len(part)
                    else:
                        conn["up"] += len(part)
                        stats.bytes_up += len(part)
            if writer.can_write_eof():
                try:
                    writer.write_eof()
                except OSError:
                    pass
        finally:
            if down and conn["flying"]:
                conn["flying"] = False
                stats.flight(-1)

    async def handle(self, c_reader, c_writer):
        self.stats.opened()
        self.next_id += 1
        conn = {"id": self.next_id, "turn": True, "requests": 0, "throttled_s": 0.0, "down": 0, "up": 0,
                "flying": False, "req": None}
        t0 = time.monotonic()
        s_writer = None
        err = ""
        try:
            tune(c_writer)
            if self.latency:
                await asyncio.sleep(self.latency)  # the handshake's round trip
            try:
                s_reader, s_writer = await asyncio.open_connection(
                    self.args.upstream_host, self.args.upstream_port, limit=READ_SIZE)
            except OSError as e:
                self.stats.upstream_failures += 1
                err = f"upstream: {e}"
                return
            tune(s_writer)
            tasks = [
                asyncio.create_task(self.pump(conn, c_reader, s_writer, self.args.up_rate, False)),
                asyncio.create_task(self.pump(conn, s_reader, c_writer, self.args.rate, True)),
            ]
            # The client's end may finish first (a half-close): the answer still
            # comes. The server's end finishing (or either failing) ends both.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[0] in done and tasks[0].exception() is None:
                await asyncio.wait([tasks[1]])
            for t in tasks:
                t.cancel()
            for r in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(r, Exception) and not err:
                    err = repr(r)
        finally:
            for w in (c_writer, s_writer):
                if w is not None:
                    w.close()
            self.stats.active -= 1
            self.traced(conn)
            if self.log:
                dt = time.monotonic() - t0
                down = conn["down"]
                self.log.write(json.dumps({
                    "id": conn["id"], "seconds": round(dt, 3), "down": down, "up": conn["up"],
                    "requests": conn["requests"], "throttled_s": round(conn["throttled_s"], 3),
                    "down_MBps": round(down / dt / 1e6, 2) if dt > 0 else 0,
                    **({"error": err} if err else {}),
                }) + "\n")

    def traced(self, conn):
        """Writes the connection's last request to --trace, if any."""
        req, conn["req"] = conn["req"], None
        if self.trace and req is not None:
            t0 = self.stats.start
            r = lambda t: None if t is None else round(t - t0, 4)
            self.trace.write(json.dumps({"conn": conn["id"], "request": r(req[0]), "first": r(req[1]),
                                         "last": r(req[2]), "bytes": req[3]}) + "\n")

    def dump(self, reset_peak=True):
        if not self.args.stats:
            return
        self.stats.dumps += 1
        snap = self.stats.snapshot()
        tmp = self.args.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snap, f)
            f.write("\n")
        os.replace(tmp, self.args.stats)
        if self.trace:
            self.trace.flush()
        if reset_peak:
            self.stats.peak_active = self.stats.active

    async def main(self):
        server = await asyncio.start_server(self.handle, "127.0.0.1", self.args.port,
                                            limit=READ_SIZE, backlog=256)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, self.dump)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if self.args.port_file:
            tmp = self.args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{port}\n")
            os.replace(tmp, self.args.port_file)
        print(f"listening on 127.0.0.1:{port} -> {self.args.upstream}, "
              f"{self.args.rate / 1e6:g} MB/s per connection down"
              + (f", {self.args.up_rate / 1e6:g} MB/s up" if self.args.up_rate else "")
              + f", {self.args.latency:g} ms latency", flush=True)
        async with server:
            await stop.wait()
        self.dump(reset_peak=False)


def tune(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    # Let drain() return before the kernel holds everything: the pacing is ours.
    writer.transport.set_write_buffer_limits(high=256 * 1024)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("upstream", help="HOST:PORT to forward to (the registry)")
    p.add_argument("--port", type=int, default=0, help="port to listen on, on 127.0.0.1 (default: a free one)")
    p.add_argument("--port-file", help="write the port listened on to this file once ready")
    p.add_argument("--rate", type=parse_rate, default=parse_rate("10M"),
                   help="server->client cap per connection, bytes/s (10M = 10 MB/s; 0 = none; default 10M)")
    p.add_argument("--up-rate", type=parse_rate, default=0.0,
                   help="client->server cap per connection, bytes/s (default 0: none)")
    p.add_argument("--latency", type=float, default=20.0,
                   help="ms added to each new connection and to each request (default 20)")
    p.add_argument("--quantum", type=float, default=5.0,
                   help="pacing step in ms: bytes are sent in slices of rate x quantum (default 5)")
    p.add_argument("--stats", help="JSON counters written here on SIGUSR1 and at exit")
    p.add_argument("--log", help="append one JSON line per closed connection to this file")
    p.add_argument("--trace", help="append one JSON line per request to this file")
    args = p.parse_args()
    host, sep, port = args.upstream.rpartition(":")
    if not sep or not port.isdigit():
        p.error("upstream must be HOST:PORT")
    args.upstream_host, args.upstream_port = host.strip("[]"), int(port)
    if args.quantum <= 0:
        p.error("--quantum must be positive")
    try:
        asyncio.run(Proxy(args).main())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
