"""Validates the served OpenAPI document: openapi-spec-validator, then a few facts about it.

python spec.py <base-url> <out-file>
"""

import json
import sys
import urllib.request

from openapi_spec_validator import validate

base, out = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(base + "/openapi.json", timeout=10) as response:
    doc = json.load(response)
validate(doc)
with open(out, "w") as f:
    json.dump(doc, f)
ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m != "parameters"}
for want in [("POST", "/transactions/{route}"), ("GET", "/transactions/{route}")]:
    assert want in ops, f"{want} not documented; have {sorted(ops)}"
print(f"openapi {doc['openapi']}: valid; {len(ops)} operations: {sorted(ops)}")
