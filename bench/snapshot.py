#!/usr/bin/env python3
"""Snapshot export and import rates, and the peak memory of each run.

Writes a snapshot of ROUTES routes (each with DAYS kept days and two months) and one key per
ten routes, then times, with the release binary:

  1. file to embedded     flight-counter import --data-dir <new dir>
  2. embedded to file     flight-counter export --data-dir <that dir>
  3. file to DynamoDB     flight-counter import --store dynamodb (dynalite on loopback)
  4. DynamoDB to file     flight-counter export --store dynamodb

and prints a markdown table: seconds, routes per second and peak RSS (from /usr/bin/time).
The exported files must equal the imported one record for record (the header aside).

Usage: python3 bench/snapshot.py [--routes 100000] [--days 20] [--binary target/release/flight-counter]
Needs the release binary (cargo build --release -p flight-counter) and dynalite
(scripts/install-emulators.sh). Loopback only; every process started here is stopped on exit.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_snapshot(path: Path, routes: int, days: int) -> None:
    today = date.today()
    airlines = ["AR", "IB", "LA", "UX", "AA", "DL", "BA", "AF", "KL", "LH", "QF", "NZ"]
    if routes > len(airlines) * 9999:
        sys.exit(f"at most {len(airlines) * 9999} routes")
    names = sorted(f"{airlines[i // 9999]}{1 + i % 9999:04d}" for i in range(routes))
    with path.open("w") as out:
        header = {
            "format": "flight-counter-snapshot",
            "version": 1,
            "id": "bench" + str(int(time.time())),
            "source": "bench",
            "taken_at": int(time.time()),
        }
        out.write(json.dumps(header) + "\n")
        keys = []
        for n, name in enumerate(names):
            day_counts = {str(today - timedelta(days=d)): 1 + (n + d) % 5 for d in range(days)}
            total = sum(day_counts.values())
            months = {}
            for day, count in day_counts.items():
                months[day[:7]] = months.get(day[:7], 0) + count
            line = {
                "type": "route",
                "route": name,
                "transactions": total + 1000,
                "days": day_counts,
                "months": months,
            }
            out.write(json.dumps(line) + "\n")
            if n % 10 == 0:
                keys.append((f"bench-key-{n:07d}", name, total + 1000))
        expires = int(time.time()) + 86400
        for key, name, count in sorted(keys):
            record = {
                "type": "key",
                "client": None,
                "key": key,
                "route": name,
                "count": count,
                "expires_at": expires,
            }
            out.write(json.dumps(record) + "\n")
        out.write(json.dumps({"type": "end", "routes": len(names), "keys": len(keys)}) + "\n")


def records(path: Path) -> list:
    """Every line but the header, parsed (so that key order within an object does not count)."""
    with path.open() as f:
        return [json.loads(line) for line in f.read().splitlines()[1:]]


def timed(args: list, env: dict) -> tuple:
    """Runs args under /usr/bin/time; returns (seconds, peak RSS in MiB)."""
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "peak_rss_kib=%M", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{args[1:3]} failed:\n{done.stderr}")
    rss = [line for line in done.stderr.splitlines() if line.startswith("peak_rss_kib=")]
    return seconds, int(rss[-1].split("=")[1]) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--binary", default=str(ROOT / "target/release/flight-counter"))
    opts = parser.parse_args()
    binary = opts.binary
    env = dict(
        os.environ,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_EC2_METADATA_DISABLED="true",
    )
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        source = work / "source.jsonl"
        write_snapshot(source, opts.routes, opts.days)
        size_mib = source.stat().st_size / 1024 / 1024
        data = work / "data"
        port = free_port()
        dynalite = subprocess.Popen(
            [
                "node",
                str(ROOT / ".tools/node_modules/dynalite/cli.js"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            dynamo = [
                "--store",
                "dynamodb",
                "--table",
                "bench-snapshot",
                "--endpoint-url",
                f"http://127.0.0.1:{port}",
                "--create-table",
                "--dynamodb-attempt-timeout",
                "5s",
            ]
            steps = [
                ("file to embedded", [binary, "import", "--input", str(source), "--data-dir", str(data)]),
                (
                    "embedded to file",
                    [binary, "export", "--data-dir", str(data), "--output", str(work / "a.jsonl")],
                ),
                ("file to DynamoDB (dynalite)", [binary, "import", "--input", str(source), *dynamo]),
                (
                    "DynamoDB (dynalite) to file",
                    [binary, "export", "--output", str(work / "b.jsonl"), *dynamo],
                ),
            ]
            for name, args in steps:
                seconds, rss = timed(args, env)
                rows.append((name, seconds, opts.routes / seconds, rss))
        finally:
            dynalite.kill()
            dynalite.wait()
        want = records(source)
        for exported in ("a.jsonl", "b.jsonl"):
            if records(work / exported) != want:
                sys.exit(f"{exported} differs from the snapshot imported")
    print(f"{opts.routes} routes, {opts.days} days each, {opts.routes // 10} keys; file {size_mib:.1f} MiB\n")
    print("| step | seconds | routes/s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    for name, seconds, rate, rss in rows:
        print(f"| {name} | {seconds:.1f} | {rate:,.0f} | {rss:.1f} |")


if __name__ == "__main__":
    main()
