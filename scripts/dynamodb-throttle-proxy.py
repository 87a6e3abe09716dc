"""An HTTP proxy in front of a local DynamoDB-compatible server (dynalite, moto) that behaves the
way DynamoDB does where the emulators do not: it throttles writes when one item gets too many,
honours the client request tokens of transactions, and, on demand, loses answers the way a
network does.

Usage: python3 scripts/dynamodb-throttle-proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:4567
       [--writes-per-second 1000] [--window-ms 1000] [--key-attributes route]
       [--honour-tokens] [--token-window-seconds 600] [--transaction-ms 0]
       [--faults drop=0.04,late=0.2] [--fault-schedule drop,none,late] [--late-ms 1500]
       [--fault-operations TransactWriteItems,UpdateItem] [--seed N]
       [--exit-on-stdin-close]

Prints one line, `listening on HOST:PORT`, once it accepts connections (port 0 picks a free
one). Runs until SIGTERM/SIGINT, or until its standard input closes with --exit-on-stdin-close
(so that a test's proxy dies with the test process).

Throttling. Real DynamoDB takes about 1,000 write units per second on a single item (partition)
and refuses the rest; neither emulator does. Write accounting is per item, (TableName, key):
PutItem, UpdateItem and DeleteItem cost 1 unit on their item, BatchWriteItem 1 per put or delete
request, TransactWriteItems 2 per Put, Update or Delete entry (ConditionCheck costs none). A
request is admitted only if every item it writes stays within --writes-per-second units over the
last --window-ms (a sliding window); its units are charged when it is forwarded, whatever the
server then answers. A refused request is not forwarded at all: it gets DynamoDB's own 400
(ProvisionedThroughputExceededException, or for a transaction TransactionCanceledException with a
ThrottlingError reason per throttled entry). Reads and every other operation pass through
uncounted. A write whose item cannot be found in its body (malformed JSON, a PutItem without the
key attributes) is forwarded uncharged, for the server to refuse as DynamoDB would.

Client request tokens (--honour-tokens). DynamoDB applies a TransactWriteItems once per
ClientRequestToken for ten minutes after the first request with it completes; neither emulator
does. With this flag the proxy keeps that promise in front of them: the same token with the same
request (every parameter but the token) within --token-window-seconds of a successful first one
is answered with the first answer, and nothing is forwarded; the same token with another request
is answered IdempotentParameterMismatchException; the same token while the first request is
still running (forwarded and not yet answered) is answered TransactionInProgressException. A
first request that did not succeed leaves nothing behind: a repeat runs anew. Checked before the
throttle (DynamoDB charges a repeat as a read). Without the flag, every request is forwarded, as
the emulators would run it: a repeat of an applied transaction runs as a new one.

Slow transactions (--transaction-ms N). Every TransactWriteItems takes N ms: held that long
(running, as far as its token goes) before it is forwarded.

Faults. A write of one of --fault-operations (default: every write) is forwarded, and then, by
chance (--faults MODE=PROBABILITY,...) or by schedule (--fault-schedule MODE,..., taken in turn,
`none` for no fault), its answer is lost:
- drop: the connection is closed with no answer;
- late: the answer is held for --late-ms (past the client's attempt timeout) and then sent;
- 500: DynamoDB's 500 InternalServerError is answered instead;
- reset: the answer's head and half its body are sent, then the connection is reset;
- mismatch: not forwarded; answered IdempotentParameterMismatchException, as DynamoDB answers a
  token used before with another request (for testing how a client takes it).
A request's fate is drawn when it arrives; --seed makes the draws repeatable.

The proxy speaks HTTP/1.1 (keep-alive, Content-Length or chunked bodies) and keeps one upstream
connection per client connection; answers are relayed unchanged. A chunked request body is
forwarded with a Content-Length instead (the emulators check no signature).

Control, on the same port: GET /__proxy/stats (JSON, see `Proxy.stats`), POST /__proxy/reset
(every counter back to zero; tokens are kept), POST /__proxy/faults with a JSON body
{"faults": {"drop": 0.1, ...}, "schedule": [...], "late_ms": 1500, "operations": [...]} (replaces
the fault settings; `{}` turns faults off).
Standard library only.
"""

import argparse
import asyncio
import collections
import hashlib
import json
import os
import random
import signal
import socket
import struct
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
WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
FAULT_MODES = ("drop", "late", "500", "reset", "mismatch")
IN_PROGRESS = {
    "__type": ERROR_PREFIX + "TransactionInProgressException",
    "message": "The transaction with the given request token is already in progress.",
}
MISMATCH = {
    "__type": ERROR_PREFIX + "IdempotentParameterMismatchException",
    "message": "Request uses the same client token as a previous, but non-identical request.",
}
INTERNAL_ERROR = {"__type": ERROR_PREFIX + "InternalServerError", "message": "Internal server error"}


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


# --- Client request tokens ---------------------------------------------------------------------


class TokenEntry:
    __slots__ = ("digest", "running", "answer", "closes", "done_at")

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.running = True
        self.answer = b""
        self.closes = False
        self.done_at = 0.0


class Tokens:
    """The ClientRequestTokens of TransactWriteItems requests, as DynamoDB keeps them. Runs on
    the event loop thread only, like the limiter."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self.entries: dict = {}
        self.reset()

    def reset(self) -> None:
        self.counts = {"replayed": 0, "in_progress": 0, "mismatched": 0, "recorded": 0}

    @staticmethod
    def identify(body: bytes) -> tuple:
        """(token, digest of everything else) of a TransactWriteItems body; no token: (None, None)."""
        try:
            request = json.loads(body)
        except ValueError:
            return None, None
        if not isinstance(request, dict) or not isinstance(request.get("ClientRequestToken"), str):
            return None, None
        token = request.pop("ClientRequestToken")
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
        return token, hashlib.sha256(canonical).hexdigest()

    def check(self, token: str, digest: str, now: float) -> tuple:
        """What to do with a request: ("forward", entry to finish), ("replay", entry),
        ("in_progress", None) or ("mismatch", None)."""
        entry = self.entries.get(token)
        if entry is not None and not entry.running and now - entry.done_at >= self.window:
            # Past the window a token is new again (and the entry forgotten).
            del self.entries[token]
            entry = None
        if entry is None:
            if len(self.entries) > 10_000:
                self.entries = {
                    t: e for t, e in self.entries.items() if e.running or now - e.done_at < self.window
                }
            entry = self.entries[token] = TokenEntry(digest)
            return "forward", entry
        if entry.digest != digest:
            self.counts["mismatched"] += 1
            return "mismatch", None
        if entry.running:
            self.counts["in_progress"] += 1
            return "in_progress", None
        self.counts["replayed"] += 1
        return "replay", entry

    def finish(self, token: str, entry: TokenEntry, answer: bytes, closes: bool, status: int) -> None:
        """A forwarded request was answered (status 0: not at all). Only a success is kept."""
        if self.entries.get(token) is not entry:
            return
        if 200 <= status < 300:
            entry.running = False
            entry.answer, entry.closes, entry.done_at = answer, closes, time.monotonic()
            self.counts["recorded"] += 1
        else:
            del self.entries[token]


# --- Faults ------------------------------------------------------------------------------------


class Faults:
    """Which answers to lose, and how many were lost."""

    def __init__(self, rates: dict, schedule: list, late_ms: float, operations: list, seed=None) -> None:
        for mode in list(rates) + [m for m in schedule if m != "none"]:
            if mode not in FAULT_MODES:
                raise ValueError(f"unknown fault {mode!r} (one of {', '.join(FAULT_MODES)})")
        if any(not 0 <= p <= 1 for p in rates.values()) or sum(rates.values()) > 1:
            raise ValueError("fault probabilities must be within 0..1 and add up to at most 1")
        self.rates = dict(rates)
        self.schedule = list(schedule)
        self.late = late_ms / 1000
        self.operations = set(operations)
        self.random = random.Random(seed)
        self.turn = 0
        self.reset()

    @classmethod
    def from_json(cls, settings: dict, seed=None) -> "Faults":
        if not isinstance(settings, dict):
            raise ValueError("fault settings must be a JSON object")
        return cls(
            {str(k): float(v) for k, v in (settings.get("faults") or {}).items()},
            [str(m) for m in settings.get("schedule") or []],
            float(settings.get("late_ms", 1500)),
            [str(o) for o in settings.get("operations") or WRITE_OPERATIONS],
            seed,
        )

    def reset(self) -> None:
        self.counts = {mode: 0 for mode in FAULT_MODES}
        self.by_operation: dict = {}

    def settings(self) -> dict:
        return {
            "faults": self.rates,
            "schedule": self.schedule,
            "late_ms": self.late * 1000,
            "operations": sorted(self.operations),
        }

    def pick(self, operation: str) -> str:
        """The fault this request's answer meets, or None."""
        if operation not in self.operations:
            return None
        if self.schedule:
            mode = self.schedule[self.turn % len(self.schedule)]
            self.turn += 1
        else:
            draw, mode = self.random.random(), "none"
            for name, rate in self.rates.items():
                if draw < rate:
                    mode = name
                    break
                draw -= rate
        if mode == "none":
            return None
        self.counts[mode] += 1
        per = self.by_operation.setdefault(operation, {m: 0 for m in FAULT_MODES})
        per[mode] += 1
        return mode


def parse_faults(value: str) -> dict:
    """`drop=0.04,late=0.2` -> {"drop": 0.04, "late": 0.2}."""
    rates = {}
    for part in filter(None, value.split(",")):
        mode, sep, rate = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{part!r} is not MODE=PROBABILITY")
        rates[mode.strip()] = float(rate)
    return rates


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


def dynamodb_error(body: dict, status: str = "400 Bad Request") -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    # The same headers DynamoDB sends with an error (the SDKs check the CRC when present).
    extra = f"x-amzn-RequestId: {uuid.uuid4()}\r\nx-amz-crc32: {zlib.crc32(payload)}\r\n"
    return response(status, payload, JSON_TYPE, extra)


def status_of(answer: bytes) -> int:
    """The status of the final answer in raw bytes (0 if it cannot be told)."""
    start = 0
    while answer.startswith(b"HTTP/", start):
        line = answer[start : answer.find(b"\r\n", start)].split(b" ")
        status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
        if not 100 <= status < 200:
            return status
        start = answer.find(b"\r\n\r\n", start) + 4
    return 0


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


class Reply:
    """What to send back for one request: the bytes, whether to close the connection after them,
    and the fault they meet on the way (None, "drop", "late" or "reset"; a 500 or a mismatch is
    already in the bytes)."""

    __slots__ = ("data", "close", "fault")

    def __init__(self, data: bytes, close: bool = False, fault: str = None) -> None:
        self.data, self.close, self.fault = data, close, fault


class Proxy:
    def __init__(
        self,
        limiter: Limiter,
        upstream: tuple,
        key_attributes: list,
        tokens: Tokens = None,
        faults: Faults = None,
        transaction_ms: float = 0,
        seed=None,
    ) -> None:
        self.limiter = limiter
        self.upstream = upstream
        self.key_attributes = key_attributes
        self.tokens = tokens
        self.faults = faults or Faults({}, [], 1500, WRITE_OPERATIONS, seed)
        self.transaction_delay = transaction_ms / 1000
        self.seed = seed
        self.upstream_statuses: dict = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = Upstream(*self.upstream)
        try:
            while True:
                head = await read_head(reader)
                if head is None or len(head.start) != 3:
                    if head is not None:
                        writer.write(
                            response("400 Bad Request", b"bad request line\n", "text/plain", close=True)
                        )
                    break
                if "100-continue" in head.header("expect").lower():
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await read_request_body(reader, head)
                reply = await self.answer(head, body, upstream)
                if reply.fault == "drop":
                    break
                if reply.fault == "late":
                    await asyncio.sleep(self.faults.late)
                if reply.fault == "reset":
                    await reset_midway(writer, reply.data)
                    break
                writer.write(reply.data)
                await writer.drain()
                if reply.close or wants_close(head, head.start[2]):
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

    async def answer(self, head: Message, body: bytes, upstream: Upstream) -> Reply:
        """What to send back for one request."""
        method, path = head.start[0].upper(), head.start[1]
        if path.startswith("/__proxy/"):
            return Reply(self.control(method, path, body))
        target = head.header("x-amz-target")
        operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else (target or "(none)")
        token = entry = None
        if self.tokens is not None and operation == "TransactWriteItems":
            token, digest = Tokens.identify(body)
            if token is not None:
                verdict, entry = self.tokens.check(token, digest, time.monotonic())
                if verdict == "mismatch":
                    return Reply(dynamodb_error(MISMATCH))
                if verdict == "in_progress":
                    return Reply(dynamodb_error(IN_PROGRESS))
                if verdict == "replay":
                    # The first answer, applied once; it can still be lost on the way back.
                    return self.lost(Reply(entry.answer, entry.closes), self.faults.pick(operation))
        charges = self.charges(operation, body)
        now = time.monotonic()
        if charges:
            over = self.limiter.over_budget(charges, now)
            if over:
                for item in over:
                    item.throttled += 1
                self.limiter.count(operation, "throttled")
                if entry is not None:
                    self.tokens.finish(token, entry, b"", False, 400)
                return Reply(
                    dynamodb_error(
                        throttled_body(operation, [item in over and units > 0 for item, units in charges])
                    )
                )
        # Drawn only for what gets this far: a refused request has no answer to lose.
        fault = self.faults.pick(operation)
        if fault == "mismatch":
            if entry is not None:
                self.tokens.finish(token, entry, b"", False, 400)
            return Reply(dynamodb_error(MISMATCH))
        if charges:
            # Charged before the answer: DynamoDB spends the capacity even if a condition fails.
            self.limiter.charge(charges, now)
        self.limiter.count(operation, "forwarded")
        if operation == "TransactWriteItems" and self.transaction_delay > 0:
            await asyncio.sleep(self.transaction_delay)
        try:
            answer, closes = await upstream.exchange(forwarded_request(head, body), method)
        except UpstreamFailed as err:
            print(f"dynamodb-throttle-proxy: upstream: {err}", file=sys.stderr, flush=True)
            if entry is not None:
                self.tokens.finish(token, entry, b"", False, 0)
            return Reply(
                response("502 Bad Gateway", f"upstream: {err}\n".encode(), "text/plain", close=True), True
            )
        status = status_of(answer)
        counts = self.upstream_statuses.setdefault(operation, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
        if entry is not None:
            self.tokens.finish(token, entry, answer, closes, status)
        return self.lost(Reply(answer, closes), fault)

    def lost(self, reply: Reply, fault: str) -> Reply:
        """The answer as the fault drawn for it leaves it."""
        if fault == "500":
            return Reply(dynamodb_error(INTERNAL_ERROR, "500 Internal Server Error"), reply.close)
        if fault in ("drop", "late", "reset"):
            reply.fault = fault
        return reply

    def charges(self, operation: str, body: bytes) -> list:
        """[(Item, units)] of a write, or None for anything admitted uncounted."""
        if operation not in WRITE_OPERATIONS:
            return None
        try:
            found = write_charges(operation, json.loads(body), self.key_attributes)
        except (ValueError, AttributeError, TypeError):
            # Not the shape of this operation's request: the server will say what is wrong.
            return None
        if not found:
            return None
        return [(self.limiter.item(table, key), units) for table, key, units in found]

    def stats(self) -> dict:
        """What GET /__proxy/stats answers: the limiter's figures (see `Limiter.stats`), and

        {"faults": {"drop": n, "late": n, "500": n, "reset": n, "mismatch": n},  # answers lost
         "faults_by_operation": {"TransactWriteItems": {"drop": n, ...}, ...},
         "fault_settings": {"faults": {...}, "schedule": [...], "late_ms": 1500, "operations": [...]},
         "upstream_statuses": {"TransactWriteItems": {"200": n, "400": n}, ...},  # as answered upstream
         "tokens": {"honoured": true, "replayed": n, "in_progress": n, "mismatched": n,
                    "recorded": n},  # first answers kept
         "transaction_ms": N}
        """
        stats = self.limiter.stats()
        stats["faults"] = dict(self.faults.counts)
        stats["faults_by_operation"] = self.faults.by_operation
        stats["fault_settings"] = self.faults.settings()
        stats["upstream_statuses"] = self.upstream_statuses
        stats["tokens"] = {"honoured": self.tokens is not None, **(self.tokens.counts if self.tokens else {})}
        stats["transaction_ms"] = self.transaction_delay * 1000
        return stats

    def control(self, method: str, path: str, body: bytes) -> bytes:
        path = path.split("?", 1)[0]
        if path == "/__proxy/stats" and method == "GET":
            payload = json.dumps(self.stats()).encode()
        elif path == "/__proxy/reset" and method == "POST":
            self.limiter.reset()
            self.faults.reset()
            self.upstream_statuses = {}
            if self.tokens is not None:
                self.tokens.reset()
            payload = b'{"reset":true}'
        elif path == "/__proxy/faults" and method == "POST":
            try:
                faults = Faults.from_json(json.loads(body or b"{}"), self.seed)
            except (ValueError, TypeError) as err:
                message = json.dumps({"error": str(err)}).encode()
                return response("400 Bad Request", message, "application/json")
            # The counts go on: only what happens next changes.
            faults.counts, faults.by_operation = self.faults.counts, self.faults.by_operation
            self.faults = faults
            payload = json.dumps(faults.settings()).encode()
        else:
            return response("404 Not Found", b'{"error":"unknown proxy endpoint"}', "application/json")
        return response("200 OK", payload, "application/json")


async def reset_midway(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Sends the answer's head and half its body, lets the client read them, and resets the
    connection (RST, not FIN): an answer that breaks off half-way."""
    head_end = data.find(b"\r\n\r\n") + 4
    cut = head_end + (len(data) - head_end) // 2 if head_end >= 4 else len(data) // 2
    writer.write(data[:cut])
    await writer.drain()
    await asyncio.sleep(0.05)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


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
    tokens = Tokens(args.token_window_seconds) if args.honour_tokens else None
    faults = Faults(args.faults, args.fault_schedule, args.late_ms, args.fault_operations, args.seed)
    proxy = Proxy(limiter, args.upstream, args.key_attributes, tokens, faults, args.transaction_ms, args.seed)
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
    parser.add_argument(
        "--writes-per-second", type=positive, default=1000, help="write units per item per window"
    )
    parser.add_argument("--window-ms", type=positive, default=1000, help="sliding window length")
    parser.add_argument(
        "--key-attributes",
        type=lambda v: [name for name in v.split(",") if name],
        default=["route"],
        help="comma-separated key attribute names, to find a PutItem's key in its Item",
    )
    parser.add_argument(
        "--honour-tokens",
        action="store_true",
        help="keep DynamoDB's promises on TransactWriteItems' ClientRequestToken",
    )
    parser.add_argument(
        "--token-window-seconds",
        type=float,
        default=600,
        help="how long a token's first answer is kept (DynamoDB: ten minutes)",
    )
    parser.add_argument(
        "--transaction-ms",
        type=float,
        default=0,
        help="every TransactWriteItems runs this long before it is forwarded",
    )
    parser.add_argument(
        "--faults",
        type=parse_faults,
        default={},
        help="MODE=PROBABILITY,... with MODE one of " + ", ".join(FAULT_MODES),
    )
    parser.add_argument(
        "--fault-schedule",
        type=lambda v: [m for m in v.split(",") if m],
        default=[],
        help="MODE,... taken in turn by each eligible request (none: no fault)",
    )
    parser.add_argument("--late-ms", type=float, default=1500, help="how long a late answer is held")
    parser.add_argument(
        "--fault-operations",
        type=lambda v: [name for name in v.split(",") if name],
        default=list(WRITE_OPERATIONS),
        help="operations whose answers may be lost (default: every write)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault draws")
    parser.add_argument("--exit-on-stdin-close", action="store_true")
    args = parser.parse_args()
    try:
        Faults(args.faults, args.fault_schedule, args.late_ms, args.fault_operations)
    except ValueError as err:
        parser.error(str(err))
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
