"""An HTTP proxy in front of a local DynamoDB-compatible server (dynalite, moto) that throttles
writes the way DynamoDB does when one item gets too many: real DynamoDB takes about 1,000 write
units per second on a single item (partition) and refuses the rest, and neither emulator does.

Usage: python3 scripts/dynamodb-throttle-proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:4567
       [--writes-per-second 1000] [--window-ms 1000] [--key-attributes route]
       [--exit-on-stdin-close]

Prints one line, `listening on HOST:PORT`, once it accepts connections (port 0 picks a free
one). Runs until SIGTERM/SIGINT, or until its standard input closes with --exit-on-stdin-close
(so that a test's proxy dies with the test process).

Write accounting is per item, (TableName, key): PutItem, UpdateItem and DeleteItem cost 1 unit
on their item, BatchWriteItem 1 per put or delete request, TransactWriteItems 2 per Put, Update
or Delete entry (ConditionCheck costs none). A request is admitted only if every item it writes
stays within --writes-per-second units over the last --window-ms (a sliding window); its units
are charged when it is forwarded, whatever the server then answers. A refused request is not
forwarded at all: it gets DynamoDB's own 400 (ProvisionedThroughputExceededException, or for a
transaction TransactionCanceledException with a ThrottlingError reason per throttled entry).
Reads and every other operation pass through uncounted. A write whose item cannot be found in
its body (malformed JSON, a PutItem without the key attributes) is forwarded uncharged, for the
server to refuse as DynamoDB would.

The proxy speaks HTTP/1.1 (keep-alive, Content-Length or chunked bodies) and keeps one upstream
connection per client connection; answers are relayed unchanged. A chunked request body is
forwarded with a Content-Length instead (the emulators check no signature).

Counters, on the same port: GET /__proxy/stats (JSON, see `stats`), POST /__proxy/reset.
Standard library only.
"""

import argparse
import asyncio
import collections
import json
import os
import signal
import sys
import threading
import time
import uuid
import zlib

TARGET_PREFIX = "DynamoDB_20120810."
JSON_TYPE = "application/x-amz-json-1.0"
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
THROUGHPUT_MESSAGE = (
    "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API."
)
THROTTLING_REASON = {
    "Code": "ThrottlingError",
    "Message": "Throughput exceeds the current capacity of your table or index. DynamoDB is "
    "automatically scaling your table or index so please try again shortly.",
}
# Request heads beyond this are refused; bodies are read by length and not limited by it.
MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    """The client sent something that is not HTTP/1.1 this proxy understands."""


class UpstreamFailed(Exception):
    """The upstream server could not be reached or broke off its answer."""


# --- Write accounting ------------------------------------------------------------------------


class Item:
    """The accepted writes on one item: charges inside the window, and totals for the stats."""

    __slots__ = ("table", "key", "recent", "in_window", "accepted", "throttled", "per_second", "max_window")

    def __init__(self, table: str, key: dict) -> None:
        self.table = table
        self.key = key
        self.recent: collections.deque = collections.deque()  # (monotonic time, units)
        self.in_window = 0
        self.accepted = 0
        self.throttled = 0
        self.per_second: list = []
        self.max_window = 0

    def expire(self, now: float, window: float) -> None:
        # A charge made at t counts over (t, t + window]: gone once now - t >= window.
        while self.recent and now - self.recent[0][0] >= window:
            self.in_window -= self.recent.popleft()[1]


class Limiter:
    """Per-item sliding-window budgets. Runs on the event loop thread only, so checking and
    charging a request happen with no await in between and need no lock."""

    def __init__(self, budget: int, window_ms: float) -> None:
        self.budget = budget
        self.window_ms = window_ms
        self.window = window_ms / 1000
        self.reset()

    def reset(self) -> None:
        self.started = time.monotonic()
        self.items: dict = {}
        self.operations: dict = {}

    def item(self, table: str, key: dict) -> Item:
        ident = (table, json.dumps(key, sort_keys=True, separators=(",", ":")))
        found = self.items.get(ident)
        if found is None:
            found = self.items[ident] = Item(table, key)
        return found

    def over_budget(self, charges: list, now: float) -> set:
        """The items of `charges` ([(Item, units)]) that this request would take past the budget;
        empty when it may go ahead."""
        wanted: dict = {}
        for item, units in charges:
            wanted[item] = wanted.get(item, 0) + units
        over = set()
        for item, units in wanted.items():
            item.expire(now, self.window)
            if units and item.in_window + units > self.budget:
                over.add(item)
        return over

    def charge(self, charges: list, now: float) -> None:
        second = int(now - self.started)
        for item, units in charges:
            if not units:
                continue
            item.recent.append((now, units))
            item.in_window += units
            item.accepted += units
            # The busiest window ends at some charge, so checking after each one finds it.
            item.max_window = max(item.max_window, item.in_window)
            if len(item.per_second) <= second:
                item.per_second.extend([0] * (second + 1 - len(item.per_second)))
            item.per_second[second] += units

    def count(self, operation: str, outcome: str) -> None:
        counts = self.operations.setdefault(operation, {"forwarded": 0, "throttled": 0})
        counts[outcome] += 1

    def stats(self) -> dict:
        """What GET /__proxy/stats answers, since start or the last reset:

        {"budget": N, "window_ms": W, "elapsed_seconds": 12.345,
         "operations": {"UpdateItem": {"forwarded": n, "throttled": n}, ...},
         "items": [{"table": "...", "key": {"route": {"S": "..."}},
                    "accepted_units": n,             # units charged on the item
                    "throttled_requests": n,         # refused requests this item was over in
                    "units_per_second": [u0, u1, ...],  # units accepted in whole second i
                    "max_units_in_any_window": n}]}  # never more than the budget
        """
        elapsed = time.monotonic() - self.started
        seconds = int(elapsed) + 1
        return {
            "budget": self.budget,
            "window_ms": self.window_ms,
            "elapsed_seconds": round(elapsed, 3),
            "operations": self.operations,
            "items": [
                {
                    "table": item.table,
                    "key": item.key,
                    "accepted_units": item.accepted,
                    "throttled_requests": item.throttled,
                    # Padded to the current second, so every item's series lines up in time.
                    "units_per_second": item.per_second + [0] * (seconds - len(item.per_second)),
                    "max_units_in_any_window": item.max_window,
                }
                for item in self.items.values()
                # Left out: items only looked at (a ConditionCheck, the entries of a refused
                # transaction that had room).
                if item.accepted or item.throttled
            ],
        }


def key_of(table: str, request: dict, key_attributes: list) -> tuple:
    """(table, key) of a single-item write: its `Key`, or for a put the key attributes of its
    `Item`. None when the body does not say (the server will refuse it)."""
    if not isinstance(table, str):
        return None
    if isinstance(request.get("Key"), dict):
        return table, request["Key"]
    item = request.get("Item")
    if isinstance(item, dict):
        key = {name: item[name] for name in key_attributes if name in item}
        if key:
            return table, key
    return None


def write_charges(operation: str, body: dict, key_attributes: list) -> list:
    """[(table, key, units)] a write request costs, one per entry in order (units 0 for a
    ConditionCheck); None when it is not a write or its items cannot be told."""
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        found = key_of(body.get("TableName"), body, key_attributes)
        return [(*found, 1)] if found else None
    if operation == "TransactWriteItems":
        charges = []
        for entry in body.get("TransactItems") or []:
            if not isinstance(entry, dict) or not entry:
                return None
            kind, request = next(iter(entry.items()))
            if not isinstance(request, dict):
                return None
            found = key_of(request.get("TableName"), request, key_attributes)
            if not found:
                return None
            # A transaction writes each item twice (prepare and commit), so costs double.
            charges.append((*found, 0 if kind == "ConditionCheck" else 2))
        return charges
    if operation == "BatchWriteItem":
        charges = []
        for table, requests in (body.get("RequestItems") or {}).items():
            for request in requests or []:
                inner = (request or {}).get("PutRequest") or (request or {}).get("DeleteRequest")
                found = key_of(table, inner or {}, key_attributes)
                if not found:
                    return None
                charges.append((*found, 1))
        return charges
    return None


def throttled_body(operation: str, over_entries: list) -> dict:
    """DynamoDB's answer to a refused write; `over_entries` says, per transaction entry, whether
    its item was over budget."""
    if operation == "TransactWriteItems":
        reasons = [dict(THROTTLING_REASON) if over else {"Code": "None"} for over in over_entries]
        codes = ", ".join(reason["Code"] for reason in reasons)
        return {
            "__type": ERROR_PREFIX + "TransactionCanceledException",
            "message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            "CancellationReasons": reasons,
        }
    return {"__type": ERROR_PREFIX + "ProvisionedThroughputExceededException", "message": THROUGHPUT_MESSAGE}


# --- HTTP/1.1 --------------------------------------------------------------------------------


class Message:
    """A parsed request or response head, with its raw bytes for relaying unchanged."""

    __slots__ = ("start", "headers", "raw")

    def __init__(self, start: list, headers: dict, raw: bytes) -> None:
        self.start = start
        self.headers = headers
        self.raw = raw

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


async def read_head(reader: asyncio.StreamReader) -> Message:
    """The next head on `reader`, or None at a clean end of stream."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if err.partial.strip():
            raise BadRequest("connection closed inside a head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("head too large") from None
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"malformed header line {line!r}")
        # Repeated headers are joined, as HTTP allows for the ones that matter here.
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Message(lines[0].split(" ", 2), headers, raw)


async def read_chunked(reader: asyncio.StreamReader) -> tuple:
    """A chunked body: (raw bytes as sent, decoded payload)."""
    raw, payload = bytearray(), bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest(f"bad chunk size line {line!r}") from None
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        raw += chunk
        payload += chunk[:-2]
    # Trailers, up to the empty line.
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        if line == b"\r\n":
            return bytes(raw), bytes(payload)


async def read_request_body(reader: asyncio.StreamReader, head: Message) -> bytes:
    if "chunked" in head.header("transfer-encoding").lower():
        return (await read_chunked(reader))[1]
    length = head.header("content-length")
    if not length:
        return b""
    try:
        return await reader.readexactly(int(length))
    except ValueError:
        raise BadRequest(f"bad Content-Length {length!r}") from None


def wants_close(head: Message, version: str) -> bool:
    connection = head.header("connection").lower()
    if version.upper() == "HTTP/1.0":
        return "keep-alive" not in connection
    return "close" in connection


def response(status: str, body: bytes, content_type: str, extra: str = "", close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def dynamodb_error(body: dict) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    # The same headers DynamoDB sends with an error (the SDKs check the CRC when present).
    extra = f"x-amzn-RequestId: {uuid.uuid4()}\r\nx-amz-crc32: {zlib.crc32(payload)}\r\n"
    return response("400 Bad Request", payload, JSON_TYPE, extra)


def forwarded_request(head: Message, body: bytes) -> bytes:
    """The request as the upstream gets it: unchanged, except that a chunked body goes with a
    Content-Length and an `Expect: 100-continue` (already answered here) is dropped."""
    chunked = "chunked" in head.header("transfer-encoding").lower()
    if not chunked and "expect" not in head.headers:
        return head.raw + body
    lines = head.raw[:-4].split(b"\r\n")
    kept = [lines[0]]
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name in (b"transfer-encoding", b"expect") or (chunked and name == b"content-length"):
            continue
        kept.append(line)
    if chunked:
        kept.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


class Upstream:
    """One persistent connection to the upstream server, opened on first use and reopened after
    the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.answering = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes, method: str) -> tuple:
        """Sends `request` and returns (raw answer, whether the upstream closed after it)."""
        reused = self.writer is not None
        if reused and self.reader.at_eof():
            # The server closed the idle connection (Node's keep-alive timeout is 5 s).
            self.close()
            reused = False
        while True:
            try:
                return await self._exchange(request, method)
            except (BadRequest, ValueError, asyncio.LimitOverrunError) as err:
                self.close()
                raise UpstreamFailed(f"unreadable answer: {err}") from None
            except (ConnectionError, asyncio.IncompleteReadError) as err:
                self.close()
                # A reused connection the server closed as the request went out, with not a
                # byte of answer: the server never read the request (it answers whatever it
                # reads), so sending it once more on a new connection cannot apply it twice.
                if not reused or self.answering:
                    raise UpstreamFailed(str(err) or type(err).__name__) from None
                reused = False

    async def _exchange(self, request: bytes, method: str) -> tuple:
        self.answering = False
        if self.writer is None:
            try:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD)
            except OSError as err:
                raise UpstreamFailed(f"cannot connect to {self.host}:{self.port}: {err}") from None
        self.writer.write(request)
        await self.writer.drain()
        interim = b""
        while True:
            head = await read_head(self.reader)
            if head is None:
                raise asyncio.IncompleteReadError(b"", None)
            self.answering = True
            status = int(head.start[1]) if len(head.start) > 1 and head.start[1].isdigit() else 0
            if not 100 <= status < 200:
                break
            # An interim answer: relayed too, the final one follows.
            interim += head.raw
        closes = wants_close(head, head.start[0])
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in head.header("transfer-encoding").lower():
            body = (await read_chunked(self.reader))[0]
        elif head.header("content-length"):
            body = await self.reader.readexactly(int(head.header("content-length")))
        else:
            # No length: the body runs until the server closes.
            body = await self.reader.read()
            closes = True
        if closes:
            self.close()
        return interim + head.raw + body, closes


# --- The proxy -------------------------------------------------------------------------------


class Proxy:
    def __init__(self, limiter: Limiter, upstream: tuple, key_attributes: list) -> None:
        self.limiter = limiter
        self.upstream = upstream
        self.key_attributes = key_attributes

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = Upstream(*self.upstream)
        try:
            while True:
                head = await read_head(reader)
                if head is None or len(head.start) != 3:
                    if head is not None:
                        writer.write(response("400 Bad Request", b"bad request line\n", "text/plain", close=True))
                    break
                if "100-continue" in head.header("expect").lower():
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await read_request_body(reader, head)
                answer, close = await self.answer(head, body, upstream)
                writer.write(answer)
                await writer.drain()
                if close or wants_close(head, head.start[2]):
                    break
        except BadRequest as err:
            writer.write(response("400 Bad Request", f"{err}\n".encode(), "text/plain", close=True))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # The client went away.
        except asyncio.CancelledError:
            # The proxy is stopping with this connection open. Ending quietly, rather than
            # cancelled, spares asyncio's stream callback a traceback about it.
            pass
        finally:
            upstream.close()
            try:
                writer.close()
            except ConnectionError:
                pass

    async def answer(self, head: Message, body: bytes, upstream: Upstream) -> tuple:
        """The bytes to send back, and whether to close the client connection after them."""
        method, path = head.start[0].upper(), head.start[1]
        if path.startswith("/__proxy/"):
            return self.control(method, path), False
        target = head.header("x-amz-target")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else (target or "(none)")
        charges = self.charges(operation, body)
        if charges:
            now = time.monotonic()
            over = self.limiter.over_budget(charges, now)
            if over:
                for item in over:
                    item.throttled += 1
                self.limiter.count(operation, "throttled")
                return dynamodb_error(throttled_body(operation, [item in over and units > 0 for item, units in charges])), False
            # Charged before the answer: DynamoDB spends the capacity even if a condition fails.
            self.limiter.charge(charges, now)
        self.limiter.count(operation, "forwarded")
        try:
            return await upstream.exchange(forwarded_request(head, body), method)
        except UpstreamFailed as err:
            print(f"dynamodb-throttle-proxy: upstream: {err}", file=sys.stderr, flush=True)
            return response("502 Bad Gateway", f"upstream: {err}\n".encode(), "text/plain", close=True), True

    def charges(self, operation: str, body: bytes) -> list:
        """[(Item, units)] of a write, or None for anything admitted uncounted."""
        if operation not in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"):
            return None
        try:
            found = write_charges(operation, json.loads(body), self.key_attributes)
        except (ValueError, AttributeError, TypeError):
            # Not the shape of this operation's request: the server will say what is wrong.
            return None
        if not found:
            return None
        return [(self.limiter.item(table, key), units) for table, key, units in found]

    def control(self, method: str, path: str) -> bytes:
        path = path.split("?", 1)[0]
        if path == "/__proxy/stats" and method == "GET":
            body = json.dumps(self.limiter.stats()).encode()
        elif path == "/__proxy/reset" and method == "POST":
            self.limiter.reset()
            body = b'{"reset":true}'
        else:
            return response("404 Not Found", b'{"error":"unknown proxy endpoint"}', "application/json")
        return response("200 OK", body, "application/json")


def exit_when_stdin_closes(stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    # A blocking read in a daemon thread works whatever stdin is (pipe, file, /dev/null). It reads
    # the descriptor, not sys.stdin, whose buffer lock would stall the interpreter's exit.
    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def serve(args: argparse.Namespace) -> None:
    limiter = Limiter(args.writes_per_second, args.window_ms)
    proxy = Proxy(limiter, args.upstream, args.key_attributes)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Before the line below: whoever reads it may signal at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.exit_on_stdin_close:
        exit_when_stdin_closes(stop, loop)
    server = await asyncio.start_server(proxy.handle, *args.listen, limit=MAX_HEAD, backlog=1024)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()


def host_port(value: str) -> tuple:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, type=host_port, help="HOST:PORT (port 0: a free one)")
    parser.add_argument("--upstream", required=True, type=host_port, help="HOST:PORT of dynalite or moto")
    parser.add_argument("--writes-per-second", type=positive, default=1000, help="write units per item per window")
    parser.add_argument("--window-ms", type=positive, default=1000, help="sliding window length")
    parser.add_argument(
        "--key-attributes",
        type=lambda v: [name for name in v.split(",") if name],
        default=["route"],
        help="comma-separated key attribute names, to find a PutItem's key in its Item",
    )
    parser.add_argument("--exit-on-stdin-close", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
