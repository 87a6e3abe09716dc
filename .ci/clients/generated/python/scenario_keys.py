"""One scenario through the Python client generated from the document of a service with API
keys (openapi-python-client), type-checked with `mypy --strict` before it runs: every
transactions operation takes an AuthenticatedClient.

    python scenario_keys.py <base-url> <write-key> <read-key>

Records with a write key, replays the key, reads one route, its days and months and several
routes, and gets each documented error back as a typed `ErrorBody`: 400 (a route that is not
one), 401 (a wrong key), 403 (a read key recording), 404 (a client pointed at the wrong base
path: the `default` answer), 422 (a key reused for another route). Prints one line per step;
exits non-zero at the first that does not hold.
"""

import sys
import uuid

from common import count_of, error_code, step
from flight_counter_client import AuthenticatedClient
from flight_counter_client.api.transactions import (
    get_daily_transactions,
    get_many_transactions,
    get_monthly_transactions,
    get_transactions,
    record_transaction,
)
from flight_counter_client.models import (
    DailyCounts,
    ErrorCode,
    MonthlyCounts,
    RouteCounts,
    TransactionCount,
)


def reads(client: AuthenticatedClient, route: str, expected: int) -> None:
    one = get_transactions.sync(route, client=client)
    step("read one route", isinstance(one, TransactionCount) and one.transactions == expected, one)
    daily = get_daily_transactions.sync(route, client=client)
    step(
        "read its days",
        isinstance(daily, DailyCounts)
        and sum(day.transactions for day in daily.days) == expected
        and len(daily.days) == 7,
        daily,
    )
    monthly = get_monthly_transactions.sync(route, client=client)
    step(
        "read its months",
        isinstance(monthly, MonthlyCounts)
        and sum(month.transactions for month in monthly.months) == expected,
        monthly,
    )
    many = get_many_transactions.sync(client=client, route=[route, "LA0001", route.lower()])
    step(
        "read several routes",
        isinstance(many, RouteCounts)
        and [(c.route, c.transactions) for c in many.routes] == [(route, expected), ("LA0001", 0)],
        many,
    )


def with_keys(base: str, write_key: str, read_key: str) -> None:
    writer = AuthenticatedClient(base_url=base, token=write_key)
    reader = AuthenticatedClient(base_url=base, token=read_key)
    route = f"PY{uuid.uuid4().int % 9000 + 1000}"
    key = str(uuid.uuid4())

    first = record_transaction.sync_detailed(route, client=writer, idempotency_key=key)
    step("record with a key", first.status_code == 200 and count_of(first.parsed) == 1, first.parsed)
    again = record_transaction.sync_detailed(route, client=writer, idempotency_key=key)
    step(
        "replay the key",
        again.status_code == 200
        and count_of(again.parsed) == 1
        and again.headers.get("idempotent-replayed") == "true",
        again.parsed,
    )
    reads(reader, route, 1)

    bad = get_transactions.sync_detailed("not-a-route", client=reader)
    step(
        "400 as a typed ErrorBody",
        bad.status_code == 400 and error_code(bad.parsed) == ErrorCode.INVALID_ROUTE,
        bad.parsed,
    )
    stranger = AuthenticatedClient(base_url=base, token="fck_" + "x" * 43)
    unknown = get_transactions.sync_detailed(route, client=stranger)
    step(
        "401 as a typed ErrorBody",
        unknown.status_code == 401 and error_code(unknown.parsed) == ErrorCode.UNAUTHORIZED,
        unknown.parsed,
    )
    forbidden = record_transaction.sync_detailed(route, client=reader)
    step(
        "403 as a typed ErrorBody",
        forbidden.status_code == 403 and error_code(forbidden.parsed) == ErrorCode.FORBIDDEN,
        forbidden.parsed,
    )
    lost = AuthenticatedClient(base_url=base + "/v0", token=read_key)
    missing = get_transactions.sync_detailed(route, client=lost)
    step(
        "404 as a typed ErrorBody (the default answer)",
        missing.status_code == 404 and error_code(missing.parsed) == ErrorCode.NOT_FOUND,
        missing.parsed,
    )
    reused = record_transaction.sync_detailed("LA0001", client=writer, idempotency_key=key)
    step(
        "422 as a typed ErrorBody",
        reused.status_code == 422 and error_code(reused.parsed) == ErrorCode.IDEMPOTENCY_KEY_REUSED,
        reused.parsed,
    )


with_keys(sys.argv[1], sys.argv[2], sys.argv[3])
