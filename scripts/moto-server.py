"""Serves moto's DynamoDB (and every other mocked AWS API) over HTTP, one request at a time.

moto's own `moto_server` runs a threaded werkzeug server, under which concurrent UpdateItem ADDs
on one item can lose updates. Served single-threaded, every request sees the previous one's
result, so counts are exact and can be asserted.

Usage: .tools/venv/bin/python scripts/moto-server.py [--host 127.0.0.1] [--port 5000]
       [--exit-on-stdin-eof] [--quiet]

With --exit-on-stdin-eof the server exits as soon as its standard input closes, i.e. when the
process that started it (and holds the other end of the pipe) goes away, however it ends.

moto makes a TransactWriteItems roll back by deep-copying the whole table once per item of the
transaction, before running it: a transaction of 50 items on a table of 100,000 items copies
five million items, and the cost grows with everything ever written. DynamoDB's cost does not
depend on the table's size. So this server saves, before each transaction, only the items the
transaction names, and puts exactly those back if it is cancelled (see
cheap_transaction_rollback); what a transaction does and answers is moto's own.
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


def cheap_transaction_rollback() -> None:
    """Makes a cancelled TransactWriteItems restore the items it names, instead of moto restoring
    whole tables it deep-copied item by item. Tables here have a partition key only."""
    import copy

    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    class TablesByReference:
        """Stands in for the copy module inside moto's DynamoDB backend: a table is "copied" as
        itself (the wrapper below saved what the transaction can change); anything else is
        copied for real."""

        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, Table):
                return value
            return copy.deepcopy(value, memo)

    models.copy = TablesByReference()
    run = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        saved = []
        for entry in transact_items:
            _, operation = next(iter(entry.items()))
            table = self.tables.get(operation.get("TableName"))
            if table is None or table.range_key_attr is not None:
                continue
            attributes = operation.get("Key") or operation.get("Item") or {}
            if table.hash_key_attr not in attributes:
                continue
            key = DynamoType(attributes[table.hash_key_attr])
            saved.append((table, key, copy.deepcopy(table.items.get(key))))
        try:
            return run(self, transact_items)
        except Exception:
            # Backwards, so that an item named twice gets its state from before the first.
            for table, key, item in reversed(saved):
                if item is None:
                    table.items.pop(key, None)
                else:
                    table.items[key] = item
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items


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

    cheap_transaction_rollback()
    app = DomainDispatcherApplication(create_backend_app)
    print(f"moto listening at http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, app, threaded=False, use_reloader=False, use_debugger=False)


if __name__ == "__main__":
    main()
