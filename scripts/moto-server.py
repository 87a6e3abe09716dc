"""Serves moto's DynamoDB (and every other mocked AWS API) over HTTP, one request at a time.

moto's own `moto_server` runs a threaded werkzeug server, under which concurrent UpdateItem ADDs
on one item can lose updates. Served single-threaded, every request sees the previous one's
result, so counts are exact and can be asserted.

Usage: .tools/venv/bin/python scripts/moto-server.py [--host 127.0.0.1] [--port 5000]
       [--exit-on-stdin-eof] [--quiet]

With --exit-on-stdin-eof the server exits as soon as its standard input closes, i.e. when the
process that started it (and holds the other end of the pipe) goes away, however it ends.
"""

import argparse
import logging
import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def exit_when_stdin_closes() -> None:
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="do not log every request")
    args = parser.parse_args()

    if args.exit_on_stdin_eof:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()

    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    app = DomainDispatcherApplication(create_backend_app)
    print(f"moto listening at http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, app, threaded=False, use_reloader=False, use_debugger=False)


if __name__ == "__main__":
    main()
