"""One scenario through the Python client generated from the document of a service without
API keys, type-checked with `mypy --strict` before it runs: no operation asks for a key, so a
plain Client type-checks.

    python scenario_open.py <base-url>

Records without a key and reads the count back. Prints one line per step; exits non-zero at
the first that does not hold.
"""

import sys
import uuid

from common import count_of, step
from flight_counter_client import Client
from flight_counter_client.api.transactions import get_transactions, record_transaction
from flight_counter_client.models import TransactionCount


def without_keys(base: str) -> None:
    client = Client(base_url=base)
    route = f"PY{uuid.uuid4().int % 9000 + 1000}"
    first = record_transaction.sync_detailed(route, client=client)
    step("record without a key", first.status_code == 200 and count_of(first.parsed) == 1, first.parsed)
    one = get_transactions.sync(route, client=client)
    step("read without a key", isinstance(one, TransactionCount) and one.transactions == 1, one)


without_keys(sys.argv[1])
