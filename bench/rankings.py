#!/usr/bin/env python3
"""Rankings and listing on the embedded store with 100,000 routes.

Imports a snapshot of ROUTES routes (each with DAYS kept days and their months, written as
bench/snapshot.py writes them) into a new data directory with the release binary, starts the
service on it (one runtime thread, loopback), and measures:

  1. the time to build one ranking: the first GET /top-routes of a period (the pass over the
     whole store), and the pass as the service's own histogram timed it;
  2. GET /top-routes served from the cached ranking: wrk, 1 thread, 32 connections, 10 s;
  3. the same with If-None-Match (every answer a bodiless 304);
  4. listing every route, page by page, at limit=100 and limit=1000: total time.

Prints a markdown table. Needs the release binary (cargo build --release -p flight-counter)
and wrk (installed from Debian if missing). Loopback only; the service is stopped on exit.

Usage: python3 bench/rankings.py [--routes 100000] [--days 20]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from snapshot import free_port, write_snapshot  # noqa: E402


def get(url: str, headers: dict | None = None) -> tuple:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=120) as resp:
        return resp.status, dict(resp.headers), resp.read()


def wait_ready(base: str) -> None:
    for _ in range(400):
        try:
            if get(f"{base}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("the service did not become ready")


def wrk(url: str, header: str | None) -> float:
    args = ["wrk", "-t1", "-c32", "-d10s", url]
    if header:
        args[1:1] = ["-H", header]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        sys.exit(f"no rate in wrk's output:\n{out}")
    return float(match.group(1))


def metric(base: str, name: str) -> float:
    text = get(f"{base}/metrics")[2].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def list_all(base: str, limit: int) -> tuple:
    started = time.monotonic()
    cursor, routes, pages = None, 0, 0
    while True:
        url = f"{base}/transactions?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = json.loads(get(url)[2])
        routes += len(page["routes"])
        pages += 1
        cursor = page.get("next_cursor")
        if not cursor:
            return time.monotonic() - started, routes, pages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--binary", default=str(ROOT / "target/release/flight-counter"))
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        source = work / "source.jsonl"
        write_snapshot(source, opts.routes, opts.days)
        data = work / "data"
        subprocess.run(
            [opts.binary, "import", "--input", str(source), "--data-dir", str(data)],
            check=True,
            capture_output=True,
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        service = subprocess.Popen(
            [opts.binary, "--bind", f"127.0.0.1:{port}", "--data-dir", str(data), "--worker-threads", "1"],
            env=dict(os.environ, RUST_LOG="warn"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(base)
            today = date.today().isoformat()
            url = f"{base}/top-routes?day={today}&limit=10"
            started = time.monotonic()
            status, headers, body = get(url)
            first = time.monotonic() - started
            assert status == 200 and json.loads(body)["routes"], body
            pass_seconds = metric(base, "flight_counter_ranking_pass_duration_seconds_sum")
            rows.append(("first GET /top-routes (builds the ranking)", f"{first:.2f} s"))
            rows.append(("the pass over 100,000 routes, as the service timed it", f"{pass_seconds:.2f} s"))
            rows.append(("GET /top-routes from the cached ranking", f"{wrk(url, None):,.0f} req/s"))
            etag = headers["ETag"]
            rows.append(("the same with If-None-Match (304)", f"{wrk(url, f'If-None-Match: {etag}'):,.0f} req/s"))
            for limit in (100, 1000):
                seconds, routes, pages = list_all(base, limit)
                assert routes == opts.routes, (routes, opts.routes)
                rows.append((f"list every route, limit={limit} ({pages} pages)", f"{seconds:.2f} s"))
        finally:
            service.terminate()
            service.wait(timeout=30)
    print(f"{opts.routes} routes, {opts.days} days each, embedded store, one runtime thread\n")
    print("| measure | figure |")
    print("|---|---:|")
    for name, figure in rows:
        print(f"| {name} | {figure} |")


if __name__ == "__main__":
    main()
