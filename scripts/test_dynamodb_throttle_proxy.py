"""Self-test of scripts/dynamodb-throttle-proxy.py (throttling, client request tokens, lost
answers), against a fake upstream that counts what reaches it and answers `{}`.

Usage: python3 -m unittest scripts/test_dynamodb_throttle_proxy.py
       (or python3 scripts/test_dynamodb_throttle_proxy.py)

Standard library only; takes a few seconds (some checks wait for the window to pass).
"""

import concurrent.futures
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

PROXY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dynamodb-throttle-proxy.py")
BUDGET = 20
TABLE = "counts"
THROUGHPUT = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API.",
}
THROTTLING_REASON = {
    "Code": "ThrottlingError",
    "Message": "Throughput exceeds the current capacity of your table or index. DynamoDB is "
    "automatically scaling your table or index so please try again shortly.",
}


class FakeUpstream(http.server.ThreadingHTTPServer):
    """Records every request (operation, body, client address) and answers `{}`, or a chunked
    answer to the made-up operation `ChunkedAnswer`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self.lock = threading.Lock()
        self.received = []

    def operations(self, operation: str = None) -> list:
        with self.lock:
            return [r for r in self.received if operation is None or r["operation"] == operation]


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        with self.server.lock:
            self.server.received.append(
                {
                    "operation": operation,
                    "body": body,
                    "peer": self.client_address,
                    "content_length": self.headers.get("Content-Length"),
                    "transfer_encoding": self.headers.get("Transfer-Encoding"),
                }
            )
        if b'"fail"' in body:
            # A transaction the server cancels: nothing applied, and nothing for a token to keep.
            payload = json.dumps(
                {
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "CancellationReasons": [{"Code": "ConditionalCheckFailed"}],
                }
            ).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if operation == "ChunkedAnswer":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b'3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def start_proxy(upstream_port: int, *extra: str) -> tuple:
    """(process, port) of a proxy in front of the fake upstream."""
    process = subprocess.Popen(
        [
            sys.executable,
            PROXY,
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            f"127.0.0.1:{upstream_port}",
            "--exit-on-stdin-close",
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("listening on 127.0.0.1:"):
        process.kill()
        raise AssertionError(f"proxy said {line!r}")
    return process, int(line.rsplit(":", 1)[1])


def key(route: str) -> dict:
    return {"route": {"S": route}}


def update(route: str, table: str = TABLE) -> tuple:
    return "UpdateItem", {
        "TableName": table,
        "Key": key(route),
        "UpdateExpression": "ADD #c :n",
        "ExpressionAttributeNames": {"#c": "transactions"},
        "ExpressionAttributeValues": {":n": {"N": "1"}},
    }


def put(route: str) -> tuple:
    return "PutItem", {"TableName": TABLE, "Item": {**key(route), "transactions": {"N": "7"}}}


def transaction(*entries: tuple) -> tuple:
    """TransactWriteItems of (kind, route) entries."""
    items = []
    for kind, route in entries:
        if kind == "Put":
            items.append({"Put": {"TableName": TABLE, "Item": {**key(route), "n": {"N": "1"}}}})
        else:
            items.append(
                {
                    kind: {
                        "TableName": TABLE,
                        "Key": key(route),
                        "ConditionExpression": "attribute_exists(route)",
                    }
                }
            )
    return "TransactWriteItems", {"TransactItems": items}


class ThrottleProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.upstream = FakeUpstream()
        threading.Thread(target=cls.upstream.serve_forever, daemon=True).start()
        cls.process, cls.port = start_proxy(
            cls.upstream.server_address[1], "--writes-per-second", str(BUDGET)
        )

    @classmethod
    def tearDownClass(cls) -> None:
        cls.process.stdin.close()
        cls.process.wait(timeout=5)
        cls.process.stdout.close()
        cls.upstream.shutdown()
        cls.upstream.server_close()

    def setUp(self) -> None:
        self.assertEqual(self.control("POST", "/__proxy/reset"), {"reset": True})
        # Every test writes its own items, named after it, so no test sees another's window.
        self.prefix = self.id().rsplit(".", 1)[1] + "-"

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def control(self, method: str, path: str) -> dict:
        conn = self.connection()
        conn.request(method, path)
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        body = json.loads(resp.read())
        conn.close()
        return body

    def call(self, request: tuple, conn: http.client.HTTPConnection = None, chunked: bool = False) -> tuple:
        """(status, headers, JSON body) of one DynamoDB call through the proxy."""
        operation, body = request
        own = conn is None
        conn = conn or self.connection()
        headers = {
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Content-Type": "application/x-amz-json-1.0",
        }
        payload = json.dumps(body).encode()
        if chunked:
            pieces = [payload[i : i + 7] for i in range(0, len(payload), 7)]
            conn.request("POST", "/", body=iter(pieces), headers=headers, encode_chunked=True)
        else:
            conn.request("POST", "/", body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        if own:
            conn.close()
        return resp.status, resp.headers, json.loads(raw)

    def reached(self, operation: str, route: str) -> int:
        """How many `operation` calls naming `route` reached the upstream."""
        needle = json.dumps({"S": route}).encode()
        return sum(needle in r["body"] for r in self.upstream.operations(operation))

    def item_stats(self, route: str) -> dict:
        found = [i for i in self.control("GET", "/__proxy/stats")["items"] if i["key"] == key(route)]
        return found[0] if found else None

    def assert_throttled(self, answer: tuple, body: dict) -> None:
        status, headers, got = answer
        self.assertEqual(status, 400)
        self.assertEqual(headers["Content-Type"], "application/x-amz-json-1.0")
        self.assertTrue(headers["x-amzn-RequestId"])
        self.assertEqual(got, body)

    def test_writes_within_budget_are_forwarded_and_over_it_refused_unforwarded(self) -> None:
        route = self.prefix + "a"
        answers = [self.call(update(route)) for _ in range(BUDGET + 5)]
        for status, _, body in answers[:BUDGET]:
            self.assertEqual((status, body), (200, {}))
        for answer in answers[BUDGET:]:
            self.assert_throttled(answer, THROUGHPUT)
        self.assertEqual(self.reached("UpdateItem", route), BUDGET)

    def test_each_item_has_its_own_budget(self) -> None:
        route, other = self.prefix + "a", self.prefix + "b"
        for _ in range(BUDGET):
            self.assertEqual(self.call(update(route))[0], 200)
        self.assertEqual(self.call(update(route))[0], 400)
        # Another key, and the same key in another table, are other items.
        self.assertEqual(self.call(update(other))[0], 200)
        self.assertEqual(self.call(update(route, table="elsewhere"))[0], 200)

    def test_a_put_is_charged_to_the_key_inside_its_item(self) -> None:
        route = self.prefix + "a"
        for _ in range(BUDGET // 2):
            self.assertEqual(self.call(put(route))[0], 200)
            self.assertEqual(self.call(update(route))[0], 200)
        self.assert_throttled(self.call(put(route)), THROUGHPUT)
        self.assert_throttled(self.call(("DeleteItem", {"TableName": TABLE, "Key": key(route)})), THROUGHPUT)
        self.assertEqual(self.reached("PutItem", route), BUDGET // 2)
        self.assertEqual(self.item_stats(route)["accepted_units"], BUDGET)

    def test_a_transaction_costs_two_units_per_written_item_and_none_per_condition_check(self) -> None:
        written, checked, fresh = self.prefix + "w", self.prefix + "c", self.prefix + "f"
        for _ in range(BUDGET // 2):
            status, _, body = self.call(transaction(("Update", written), ("ConditionCheck", checked)))
            self.assertEqual((status, body), (200, {}))
        self.assertEqual(self.item_stats(written)["accepted_units"], BUDGET)
        self.assertIsNone(self.item_stats(checked), "a condition check costs nothing")
        # The written item is full, the checked one is not touched.
        refused = self.call(transaction(("Put", fresh), ("Update", written), ("ConditionCheck", checked)))
        self.assert_throttled(
            refused,
            {
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                "[None, ThrottlingError, None]",
                "CancellationReasons": [{"Code": "None"}, THROTTLING_REASON, {"Code": "None"}],
            },
        )
        self.assertEqual(self.reached("TransactWriteItems", written), BUDGET // 2)
        self.assertIsNone(self.item_stats(fresh), "nothing of a refused transaction is charged")
        for _ in range(BUDGET):
            self.assertEqual(self.call(update(checked))[0], 200)

    def test_a_transaction_needs_room_for_both_its_units(self) -> None:
        route = self.prefix + "a"
        for _ in range(BUDGET - 1):
            self.assertEqual(self.call(update(route))[0], 200)
        status, _, body = self.call(transaction(("Delete", route)))
        self.assertEqual(status, 400)
        self.assertEqual(body["CancellationReasons"], [THROTTLING_REASON])
        self.assertEqual(self.call(update(route))[0], 200, "the last unit is still free")

    def test_a_batch_write_costs_one_unit_per_request(self) -> None:
        first, second = self.prefix + "a", self.prefix + "b"
        batch = (
            "BatchWriteItem",
            {
                "RequestItems": {
                    TABLE: [
                        {"PutRequest": {"Item": {**key(first), "n": {"N": "1"}}}},
                        {"DeleteRequest": {"Key": key(second)}},
                    ]
                }
            },
        )
        for _ in range(BUDGET):
            self.assertEqual(self.call(batch)[0], 200)
        self.assert_throttled(self.call(batch), THROUGHPUT)
        self.assertEqual(self.item_stats(first)["accepted_units"], BUDGET)
        self.assertEqual(self.item_stats(second)["accepted_units"], BUDGET)
        self.assertEqual(len(self.upstream.operations("BatchWriteItem")), BUDGET)

    def test_reads_and_other_operations_pass_uncounted(self) -> None:
        route = self.prefix + "a"
        for _ in range(BUDGET):
            self.call(update(route))
        before = len(self.upstream.operations())
        get = ("GetItem", {"TableName": TABLE, "Key": key(route)})
        for request in [get] * (BUDGET * 2) + [("DescribeTable", {"TableName": TABLE})]:
            self.assertEqual(self.call(request)[:3:2], (200, {}))
        self.assertEqual(len(self.upstream.operations()), before + BUDGET * 2 + 1)
        stats = self.control("GET", "/__proxy/stats")
        self.assertEqual(stats["operations"]["GetItem"], {"forwarded": BUDGET * 2, "throttled": 0})
        self.assertEqual(self.item_stats(route)["accepted_units"], BUDGET)

    def test_a_write_whose_item_cannot_be_told_is_forwarded_uncharged(self) -> None:
        before = len(self.upstream.operations())
        keyless = ("PutItem", {"TableName": TABLE, "Item": {"other": {"S": self.prefix}}})
        malformed = ("BatchWriteItem", {"RequestItems": {TABLE: [1, 2]}})
        for request in [keyless, malformed] * BUDGET:
            self.assertEqual(self.call(request)[0], 200)
        self.assertEqual(len(self.upstream.operations()), before + BUDGET * 2)
        self.assertEqual(self.control("GET", "/__proxy/stats")["items"], [])

    def test_the_stats_say_what_was_accepted_and_when(self) -> None:
        route = self.prefix + "a"
        for _ in range(BUDGET + 3):
            self.call(update(route))
        self.call(transaction(("Update", route)))
        stats = self.control("GET", "/__proxy/stats")
        self.assertEqual(stats["budget"], BUDGET)
        self.assertEqual(stats["window_ms"], 1000)
        self.assertIsInstance(stats["elapsed_seconds"], float)
        self.assertEqual(stats["operations"]["UpdateItem"], {"forwarded": BUDGET, "throttled": 3})
        self.assertEqual(stats["operations"]["TransactWriteItems"], {"forwarded": 0, "throttled": 1})
        [item] = stats["items"]
        self.assertEqual(item["table"], TABLE)
        self.assertEqual(item["key"], key(route))
        self.assertEqual(item["accepted_units"], BUDGET)
        self.assertEqual(item["throttled_requests"], 4)
        self.assertEqual(sum(item["units_per_second"]), BUDGET)
        self.assertEqual(len(item["units_per_second"]), int(stats["elapsed_seconds"]) + 1)
        self.assertEqual(item["max_units_in_any_window"], BUDGET)
        self.assertEqual(self.control("POST", "/__proxy/reset"), {"reset": True})
        stats = self.control("GET", "/__proxy/stats")
        self.assertEqual((stats["items"], stats["operations"]), ([], {}))
        self.assertLess(stats["elapsed_seconds"], 1)

    def test_the_budget_frees_up_as_the_window_slides(self) -> None:
        route = self.prefix + "a"
        half = BUDGET // 2
        started = time.monotonic()
        for _ in range(half):
            self.assertEqual(self.call(update(route))[0], 200)
        time.sleep(max(0, 0.5 - (time.monotonic() - started)))
        for _ in range(half):
            self.assertEqual(self.call(update(route))[0], 200)
        self.assertEqual(self.call(update(route))[0], 400)
        # Past the first half's window, not the second's: room for one half again.
        time.sleep(max(0, 1.15 - (time.monotonic() - started)))
        answers = [self.call(update(route))[0] for _ in range(half + 1)]
        self.assertEqual(answers, [200] * half + [400])
        item = self.item_stats(route)
        self.assertEqual(item["accepted_units"], BUDGET + half)
        self.assertEqual(item["units_per_second"][:2], [BUDGET, half])
        self.assertLessEqual(item["max_units_in_any_window"], BUDGET)

    def test_a_chunked_request_body_is_read_and_forwarded_with_a_length(self) -> None:
        route = self.prefix + "a"
        for _ in range(BUDGET):
            self.assertEqual(self.call(update(route), chunked=True)[:3:2], (200, {}))
        self.assert_throttled(self.call(update(route), chunked=True), THROUGHPUT)
        [sent] = [
            r
            for r in self.upstream.operations("UpdateItem")
            if json.dumps({"S": route}).encode() in r["body"]
        ][:1]
        self.assertEqual(json.loads(sent["body"]), update(route)[1])
        self.assertEqual((sent["content_length"], sent["transfer_encoding"]), (str(len(sent["body"])), None))

    def test_a_chunked_answer_is_relayed(self) -> None:
        conn = self.connection()
        status, headers, body = self.call(("ChunkedAnswer", {}), conn)
        self.assertEqual((status, body, headers["Transfer-Encoding"]), (200, {"a": 1}, "chunked"))
        # And the connection still works after it.
        self.assertEqual(self.call(update(self.prefix + "a"), conn)[0], 200)
        conn.close()

    def test_a_connection_is_kept_alive_and_so_is_its_upstream_connection(self) -> None:
        route = self.prefix + "a"
        conn = self.connection()
        answers = [self.call(update(route), conn)[0] for _ in range(BUDGET + 2)]
        self.assertEqual(answers, [200] * BUDGET + [400] * 2)
        socket = conn.sock
        self.assertEqual(self.call(("GetItem", {"TableName": TABLE, "Key": key(route)}), conn)[0], 200)
        self.assertIs(conn.sock, socket, "the proxy kept the connection open")
        conn.close()
        peers = {
            r["peer"] for r in self.upstream.operations() if json.dumps({"S": route}).encode() in r["body"]
        }
        self.assertEqual(len(peers), 1, "one upstream connection served them all")

    def test_many_concurrent_connections_never_exceed_the_budget(self) -> None:
        route = self.prefix + "a"

        def client(_: int) -> list:
            conn = self.connection()
            statuses = [self.call(update(route), conn)[0] for _ in range(5)]
            conn.close()
            return statuses

        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            statuses = [s for batch in pool.map(client, range(200)) for s in batch]
        self.assertEqual(set(statuses) - {200, 400}, set())
        admitted = statuses.count(200)
        self.assertGreaterEqual(admitted, BUDGET)
        self.assertEqual(self.reached("UpdateItem", route), admitted)
        item = self.item_stats(route)
        self.assertEqual(item["accepted_units"], admitted)
        self.assertEqual(item["max_units_in_any_window"], BUDGET)
        # A whole second lies inside one window, so it cannot hold more than the budget either.
        for second, units in enumerate(item["units_per_second"]):
            self.assertLessEqual(units, BUDGET, f"second {second}")


def tokened(token: str, route: str, fail: bool = False) -> tuple:
    """A TransactWriteItems of one Update, with a client request token."""
    update = {"TableName": TABLE, "Key": key(route), "UpdateExpression": "ADD #c :n"}
    if fail:
        update["ConditionExpression"] = "fail"
    return "TransactWriteItems", {"TransactItems": [{"Update": update}], "ClientRequestToken": token}


IN_PROGRESS = {
    "__type": "com.amazonaws.dynamodb.v20120810#TransactionInProgressException",
    "message": "The transaction with the given request token is already in progress.",
}
MISMATCH = {
    "__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
    "message": "Request uses the same client token as a previous, but non-identical request.",
}


class ProxyCase(unittest.TestCase):
    """One proxy (started with ARGS) in front of one fake upstream for the whole class."""

    ARGS: tuple = ()

    @classmethod
    def setUpClass(cls) -> None:
        cls.upstream = FakeUpstream()
        threading.Thread(target=cls.upstream.serve_forever, daemon=True).start()
        cls.process, cls.port = start_proxy(cls.upstream.server_address[1], *cls.ARGS)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.process.stdin.close()
        cls.process.wait(timeout=5)
        cls.process.stdout.close()
        cls.upstream.shutdown()
        cls.upstream.server_close()

    def setUp(self) -> None:
        self.prefix = self.id().rsplit(".", 1)[1] + "-"
        self.assertEqual(self.control("POST", "/__proxy/reset"), {"reset": True})
        self.assertEqual(self.control("POST", "/__proxy/faults", {})["faults"], {})

    def control(self, method: str, path: str, body: dict = None) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=None if body is None else json.dumps(body).encode())
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        answer = json.loads(resp.read())
        conn.close()
        return answer

    def call(self, request: tuple) -> tuple:
        """(status, JSON body) of one call on a connection of its own."""
        operation, body = request
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(
            "POST",
            "/",
            body=json.dumps(body).encode(),
            headers={"X-Amz-Target": f"DynamoDB_20120810.{operation}"},
        )
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, json.loads(raw)

    def reached(self, operation: str, route: str) -> int:
        needle = json.dumps({"S": route}).encode()
        return sum(needle in r["body"] for r in self.upstream.operations(operation))


class TokenTest(ProxyCase):
    """--honour-tokens, with transactions that take 300 ms and tokens kept for one second."""

    ARGS = ("--honour-tokens", "--token-window-seconds", "1", "--transaction-ms", "300")

    def test_the_same_request_with_the_same_token_is_applied_once(self) -> None:
        route = self.prefix + "a"
        request = tokened(self.prefix, route)
        self.assertEqual(self.call(request), (200, {}))
        self.assertEqual(self.call(request), (200, {}))
        self.assertEqual(self.reached("TransactWriteItems", route), 1)
        tokens = self.control("GET", "/__proxy/stats")["tokens"]
        self.assertEqual((tokens["honoured"], tokens["recorded"], tokens["replayed"]), (True, 1, 1))

    def test_another_request_with_the_same_token_is_a_mismatch(self) -> None:
        first, other = self.prefix + "a", self.prefix + "b"
        self.assertEqual(self.call(tokened(self.prefix, first)), (200, {}))
        self.assertEqual(self.call(tokened(self.prefix, other)), (400, MISMATCH))
        self.assertEqual(self.reached("TransactWriteItems", other), 0)
        self.assertEqual(self.control("GET", "/__proxy/stats")["tokens"]["mismatched"], 1)

    def test_a_repeat_while_the_first_runs_is_in_progress(self) -> None:
        route = self.prefix + "a"
        request = tokened(self.prefix, route)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(self.call, request)
            time.sleep(0.1)
            self.assertEqual(self.call(request), (400, IN_PROGRESS))
            self.assertEqual(first.result(timeout=5), (200, {}))
        self.assertEqual(self.call(request), (200, {}), "then the first answer")
        self.assertEqual(self.reached("TransactWriteItems", route), 1)
        tokens = self.control("GET", "/__proxy/stats")["tokens"]
        self.assertEqual((tokens["in_progress"], tokens["replayed"]), (1, 1))

    def test_a_first_request_that_failed_leaves_nothing_behind(self) -> None:
        route = self.prefix + "a"
        request = tokened(self.prefix, route, fail=True)
        self.assertEqual(self.call(request)[0], 400)
        self.assertEqual(self.call(request)[0], 400)
        self.assertEqual(self.reached("TransactWriteItems", route), 2, "run again, not answered from memory")

    def test_a_token_is_new_again_after_its_window(self) -> None:
        route = self.prefix + "a"
        request = tokened(self.prefix, route)
        self.assertEqual(self.call(request), (200, {}))
        time.sleep(1.1)
        self.assertEqual(self.call(request), (200, {}))
        self.assertEqual(self.reached("TransactWriteItems", route), 2)

    def test_a_transaction_takes_its_time_and_other_operations_do_not(self) -> None:
        started = time.monotonic()
        self.assertEqual(self.call(tokened(self.prefix, self.prefix + "a")), (200, {}))
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        started = time.monotonic()
        self.assertEqual(self.call(update(self.prefix + "a")), (200, {}))
        self.assertLess(time.monotonic() - started, 0.3)


class NoTokensTest(ProxyCase):
    def test_without_honour_tokens_every_repeat_is_forwarded(self) -> None:
        route = self.prefix + "a"
        request = tokened(self.prefix, route)
        self.assertEqual([self.call(request) for _ in range(3)], [(200, {})] * 3)
        self.assertEqual(self.reached("TransactWriteItems", route), 3)
        self.assertFalse(self.control("GET", "/__proxy/stats")["tokens"]["honoured"])


class FaultTest(ProxyCase):
    ARGS = ("--seed", "7")

    def faults(self, **settings) -> None:
        self.control("POST", "/__proxy/faults", settings)

    def test_a_dropped_answer_closes_the_connection_after_the_write_went_through(self) -> None:
        route = self.prefix + "a"
        self.faults(faults={"drop": 1}, operations=["UpdateItem"])
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.call(update(route))
        self.assertEqual(self.reached("UpdateItem", route), 1)
        # Other operations are left alone.
        self.assertEqual(self.call(("GetItem", {"TableName": TABLE, "Key": key(route)})), (200, {}))
        stats = self.control("GET", "/__proxy/stats")
        self.assertEqual(stats["faults"]["drop"], 1)
        self.assertEqual(stats["faults_by_operation"]["UpdateItem"]["drop"], 1)
        self.assertEqual(stats["upstream_statuses"]["UpdateItem"], {"200": 1})

    def test_a_late_answer_comes_after_the_delay(self) -> None:
        route = self.prefix + "a"
        self.faults(faults={"late": 1}, late_ms=400)
        started = time.monotonic()
        self.assertEqual(self.call(update(route)), (200, {}))
        self.assertGreaterEqual(time.monotonic() - started, 0.4)
        self.assertEqual(self.reached("UpdateItem", route), 1)

    def test_a_500_is_answered_after_the_write_went_through(self) -> None:
        route = self.prefix + "a"
        self.faults(faults={"500": 1})
        status, body = self.call(put(route))
        self.assertEqual(status, 500)
        self.assertEqual(body["__type"], "com.amazonaws.dynamodb.v20120810#InternalServerError")
        self.assertEqual(self.reached("PutItem", route), 1)

    def test_a_reset_breaks_the_answer_off_half_way(self) -> None:
        route = self.prefix + "a"
        self.faults(faults={"reset": 1})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(
            "POST",
            "/",
            body=json.dumps(update(route)[1]).encode(),
            headers={"X-Amz-Target": "DynamoDB_20120810.UpdateItem"},
        )
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200, "the head arrives")
        with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
        conn.close()
        self.assertEqual(self.reached("UpdateItem", route), 1)

    def test_a_mismatch_is_answered_without_forwarding(self) -> None:
        route = self.prefix + "a"
        self.faults(faults={"mismatch": 1}, operations=["TransactWriteItems"])
        self.assertEqual(self.call(tokened(self.prefix, route)), (400, MISMATCH))
        self.assertEqual(self.reached("TransactWriteItems", route), 0)

    def test_a_schedule_is_taken_in_turn_and_faults_can_be_turned_off(self) -> None:
        route = self.prefix + "a"
        self.faults(schedule=["500", "none"])
        self.assertEqual([self.call(update(route))[0] for _ in range(4)], [500, 200, 500, 200])
        self.faults()
        self.assertEqual([self.call(update(route))[0] for _ in range(2)], [200, 200])
        stats = self.control("GET", "/__proxy/stats")
        self.assertEqual(stats["faults"]["500"], 2)
        self.assertEqual(stats["fault_settings"]["schedule"], [])

    def test_by_chance_the_share_asked_for_and_every_one_counted(self) -> None:
        route = self.prefix + "a"
        self.faults(faults={"500": 0.5})
        statuses = [self.call(update(route))[0] for _ in range(200)]
        self.assertTrue(60 <= statuses.count(500) <= 140, statuses.count(500))
        self.assertEqual(self.control("GET", "/__proxy/stats")["faults"]["500"], statuses.count(500))
        self.assertEqual(self.reached("UpdateItem", route), 200)

    def test_bad_fault_settings_are_refused(self) -> None:
        for settings in ({"faults": {"fire": 1}}, {"faults": {"drop": 0.7, "late": 0.7}}, [1]):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("POST", "/__proxy/faults", body=json.dumps(settings).encode())
            resp = conn.getresponse()
            self.assertEqual(resp.status, 400, settings)
            resp.read()
            conn.close()


class LifecycleTest(unittest.TestCase):
    def setUp(self) -> None:
        self.upstream = FakeUpstream()
        threading.Thread(target=self.upstream.serve_forever, daemon=True).start()
        self.process, self.port = start_proxy(self.upstream.server_address[1])

    def tearDown(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()
        self.upstream.shutdown()
        self.upstream.server_close()

    def test_it_exits_when_its_stdin_closes(self) -> None:
        self.process.stdin.close()
        self.assertEqual(self.process.wait(timeout=5), 0)

    def test_it_exits_on_sigterm(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.assertEqual(self.process.wait(timeout=5), 0)

    def test_the_default_budget_is_a_thousand_per_second(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/__proxy/stats")
        stats = json.loads(conn.getresponse().read())
        self.assertEqual((stats["budget"], stats["window_ms"]), (1000, 1000))
        conn.close()


if __name__ == "__main__":
    unittest.main()
