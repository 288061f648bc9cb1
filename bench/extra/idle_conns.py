#!/usr/bin/env python3
"""Hold N idle HTTP/1.1 keep-alive connections (for `bench/extra.sh idle`; stdlib only).

Usage: idle_conns.py HOST PORT N STATUS_FILE [--token T] [--path P] [--parallel K] [--timeout S]

Opens N TCP connections to HOST:PORT (at most K connects/requests in flight at once), sends
one `GET P` with `Authorization: Bearer T` on each, reads the complete response (status line,
headers, Content-Length or chunked body) and requires status 200. Then it keeps every
connection open and sends nothing more, and writes one line to STATUS_FILE:

    ready ok=<connections holding a 200 response> failed=<n> first_error=<text or ->

It then waits for SIGTERM or SIGINT. On that signal it counts the connections the server
has closed meanwhile (EOF seen), appends

    held open=<n> closed_by_server=<n>

to STATUS_FILE, closes everything and exits 0. RLIMIT_NOFILE is raised to N + 64 (up to the
hard limit). Exits 1 if the limit is too low or on a usage error.
"""
import argparse
import asyncio
import resource
import signal
import sys


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError("bad status line %r" % lines[0][:80])
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("connection", "").lower() == "close":
        raise ValueError("server answered Connection: close (status %d)" % status)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            await reader.readexactly(size + 2)
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif status not in (204, 304):
        raise ValueError("response without a length (status %d): not keep-alive" % status)
    return status


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("status_file")
    ap.add_argument("--token", default="")
    ap.add_argument("--path", default="/")
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.n + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            print(f"RLIMIT_NOFILE hard limit {hard} < {need}", file=sys.stderr)
            return 1
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    req = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
           + (f"Authorization: Bearer {a.token}\r\n" if a.token else "")
           + "User-Agent: idle_conns\r\n\r\n").encode()
    sem = asyncio.Semaphore(a.parallel)
    errors = []

    async def one():
        async with sem:
            w = None
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port), a.timeout)
                w.write(req)
                status = await asyncio.wait_for(read_response(r), a.timeout)
                if status != 200:
                    raise ValueError("status %d" % status)
                return r, w
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                errors.append("%s: %s" % (type(e).__name__, e))
                if w is not None:
                    w.close()
                return None

    held = [c for c in await asyncio.gather(*(one() for _ in range(a.n))) if c is not None]
    first = errors[0].replace("\n", " ") if errors else "-"
    with open(a.status_file, "w") as f:
        f.write(f"ready ok={len(held)} failed={len(errors)} first_error={first}\n")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    await asyncio.sleep(0)  # let pending EOF callbacks run
    closed = sum(1 for r, w in held if r.at_eof() or w.transport.is_closing())
    with open(a.status_file, "a") as f:
        f.write(f"held open={len(held) - closed} closed_by_server={closed}\n")
    for _, w in held:
        w.close()
    await asyncio.sleep(0)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
