"""What both scenarios share: one line per step, and reading typed answers."""

import sys

from flight_counter_client.models import ErrorBody, ErrorCode, TransactionCount


def step(name: str, ok: bool, detail: object) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        sys.exit(1)


def count_of(parsed: TransactionCount | ErrorBody | None) -> int:
    assert isinstance(parsed, TransactionCount), parsed
    return parsed.transactions


def error_code(parsed: object) -> ErrorCode | None:
    return parsed.error if isinstance(parsed, ErrorBody) else None
