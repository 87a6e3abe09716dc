#!/usr/bin/env python3
"""Terraform helpers for flight-counter's infrastructure checks.

Subcommands:
  docs [--check] ROOT...   write (or compare) each root's README section in
                           terraform-docs' markdown table format, between the
                           BEGIN_TF_DOCS/END_TF_DOCS markers
  readme ROOT...           check that each README's Inputs/Outputs tables list
                           exactly the root's variables (type, default,
                           required) and outputs
  manifests FILE --kubernetes-version V
                           rendered Kubernetes manifests agree with the
                           Terraform roots and the service's facts
  invariants ROOT...       project rules: parseable HCL, S3 backend with
                           lockfile and encryption, pinned versions, typed and
                           described variables, described outputs, no account
                           IDs or secrets, DynamoDB layout and IAM actions that
                           match the service

Needs python-hcl2 (and PyYAML for the shared .terraform-docs.yml).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / ".terraform-docs.yml"

# What the service expects of AWS (app/src); keep in step with the service.
TABLE_HASH_KEY = ("route", "S")
TABLE_TTL_ATTRIBUTE = "expires_at"
SERVICE_DYNAMODB_ACTIONS = {
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:UpdateItem",
    "dynamodb:PutItem",
    "dynamodb:DescribeTable",
}
TERRAFORM_MIN_VERSION = ">= 1.10"
# The state key's alias: made by terraform-backends, named by every backend.
STATE_KEY_ALIAS = "alias/flight-counter-tfstate"


# --------------------------------------------------------------------------
# Parsing


def unwrap(value):
    """python-hcl2 wraps expressions as "${...}"; strip that for display."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return value


def first(block: dict, key: str, default=None):
    value = block.get(key, default)
    if isinstance(value, list) and value and key not in ("default",):
        return value[0]
    return value


@dataclass
class Variable:
    name: str
    file: str
    line: int
    description: str | None
    type_src: str | None
    has_default: bool
    default: object
    validations: int
    sensitive: bool


@dataclass
class Output:
    name: str
    file: str
    line: int
    description: str | None
    sensitive: bool


@dataclass
class Root:
    path: Path
    blocks: dict = field(default_factory=dict)  # file name -> parsed dict
    texts: dict = field(default_factory=dict)  # file name -> source text
    errors: list = field(default_factory=list)

    def each(self, kind: str):
        for fname, parsed in sorted(self.blocks.items()):
            for item in parsed.get(kind, []):
                yield fname, item

    @property
    def variables(self) -> list[Variable]:
        out = []
        for fname, item in self.each("variable"):
            for name, body in item.items():
                start = body.get("__start_line__", 0)
                end = body.get("__end_line__", 0)
                out.append(
                    Variable(
                        name=name,
                        file=fname,
                        line=start,
                        description=first(body, "description"),
                        type_src=type_source(self.texts[fname], start, end),
                        has_default="default" in body,
                        default=body["default"][0] if "default" in body else None,
                        validations=len(body.get("validation", [])),
                        sensitive=bool(first(body, "sensitive", False)),
                    )
                )
        return sorted(out, key=lambda v: v.name)

    @property
    def outputs(self) -> list[Output]:
        out = []
        for fname, item in self.each("output"):
            for name, body in item.items():
                out.append(
                    Output(
                        name=name,
                        file=fname,
                        line=body.get("__start_line__", 0),
                        description=first(body, "description"),
                        sensitive=bool(first(body, "sensitive", False)),
                    )
                )
        return sorted(out, key=lambda o: o.name)

    def resources(self, kind: str = "resource"):
        """(type, name, body, file) for resources or data sources."""
        for fname, item in self.each(kind):
            for rtype, named in item.items():
                for rname, body in named.items():
                    yield rtype, rname, body, fname

    @property
    def modules(self):
        out = []
        for fname, item in self.each("module"):
            for name, body in item.items():
                out.append((name, first(body, "source"), first(body, "version"), fname))
        return sorted(out)

    @property
    def terraform_blocks(self):
        return [item for _, item in self.each("terraform")]

    @property
    def required_version(self):
        for tb in self.terraform_blocks:
            if "required_version" in tb:
                return first(tb, "required_version")
        return None

    @property
    def required_providers(self) -> dict:
        providers = {}
        for tb in self.terraform_blocks:
            for rp in tb.get("required_providers", []):
                for name, spec in rp.items():
                    if name.startswith("__"):
                        continue
                    if isinstance(spec, list):
                        spec = spec[0] if spec else {}
                    if not isinstance(spec, dict):
                        spec = {"version": spec}
                    providers[name] = {k: first(spec, k) for k in spec}
        return providers

    @property
    def backends(self):
        out = []
        for tb in self.terraform_blocks:
            for backend in tb.get("backend", []):
                for btype, body in backend.items():
                    out.append((btype, body))
        return out


def type_source(text: str, start: int, end: int) -> str | None:
    """The text of a variable's `type = ...` expression, as written."""
    lines = text.splitlines()[start - 1 : end]
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)type\s*=\s*(.*)$", line)
        if not m:
            continue
        indent = len(m.group(1))
        expr = [m.group(2).rstrip()]
        depth = sum(expr[0].count(c) for c in "({[") - sum(expr[0].count(c) for c in ")}]")
        j = i + 1
        while depth > 0 and j < len(lines):
            nxt = lines[j].rstrip()
            expr.append(nxt[indent:] if nxt[:indent].strip() == "" else nxt.lstrip())
            depth += sum(nxt.count(c) for c in "({[") - sum(nxt.count(c) for c in ")}]")
            j += 1
        return "\n".join(expr)
    return None


def load_root(path: Path) -> Root:
    root = Root(path=path)
    files = sorted(path.glob("*.tf"))
    if not files:
        root.errors.append(f"{path}: no .tf files")
    for f in files:
        text = f.read_text()
        root.texts[f.name] = text
        try:
            with f.open() as fh:
                root.blocks[f.name] = hcl2.load(fh)
        except Exception as exc:  # the parser raises several exception types
            root.errors.append(f"{f.relative_to(REPO)}: does not parse: {exc}".splitlines()[0])
    return root


# --------------------------------------------------------------------------
# terraform-docs compatible markdown


def load_config() -> dict:
    with CONFIG.open() as fh:
        return yaml.safe_load(fh) or {}


def esc(text: str) -> str:
    """Names in anchors and links (terraform-docs' SanitizeName with escape: true)."""
    return text.replace("_", "\\_")


# terraform-docs' escape rule (template/sanitizer.go: SanitizeMarkdownTable,
# EscapeCharacters, ConvertMultiLineText, NormalizeURLs), ported line by line so
# that this generator and terraform-docs write the same README. Go's \s is
# [\t\n\f\r ] and its \w is ASCII; Python's are wider, hence the spelled-out
# classes.
_WS = r"[\t\n\f\r ]"
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s<>"'`]+|mailto:[^\s<>"'`]+""")
_DONT = "\u2021\u2021\u2021DONTESCAPE\u2021\u2021\u2021"


def _segments(text: str, fence: str, normal, code) -> str:
    """processSegments: split on `fence`; alternate normal and code segments,
    empty segments skipped without switching (as the Go code does)."""
    in_code = text.startswith(fence)
    parts = text.split(fence)
    out = []
    for i, part in enumerate(parts):
        if not part:
            continue
        first = i == 0 or not parts[i - 1].strip()
        last = i == len(parts) - 1 or not parts[i + 1].strip()
        out.append(code(part, first, last) if in_code else normal(part, first, last))
        in_code = not in_code
    return "".join(out)


def _escape_underscores(line: str) -> str:
    c = "_"
    cases = [
        (re.compile(rf"^({_WS}*)({c}+)({_WS}+)(.*)"), [2]),
        (re.compile(rf"({_WS}+)({c}+)([^\t\n\f\r {c}])(.*)([^\t\n\f\r {c}])({c}+)({_WS}+)"), [6, 2]),
    ]
    for pattern, groups in cases:
        matches = list(pattern.finditer(line))
        for m in matches:
            for k in groups:
                start, end = m.span(k)
                line = line[:start] + m.group(k).replace(c, _DONT) + line[end:]
    return line.replace(c, "\\" + c).replace(_DONT, c)


def escape_characters(text: str, pipe: bool) -> str:
    tick = lambda seg, first, last: f"`{seg}`"  # noqa: E731
    if pipe:
        text = _segments(text, "`", lambda seg, f, l: seg.replace("|", "\\|"), tick)
    return _segments(text, "`", lambda seg, f, l: "\n".join(_escape_underscores(x) for x in seg.split("\n")), tick)


def convert_multiline_table(text: str) -> str:
    text = text.strip()
    text = re.sub(rf"([^\t\n\f\r ]*)(\r?\n)({_WS}*)([0-9A-Za-z_]+)", r"\1  \2\3\4", text)
    text = text.replace("    \n", "  \n").replace("  \n\n", "\n\n").replace("\n  \n", "\n\n")
    return text.replace("  \n", "<br/>").replace("\n", "<br/>")


def normalize_urls(text: str) -> str:
    for url in _URL.findall(text):
        text = text.replace(url, url.replace("\\", ""))
    return text


def cell(text: str) -> str:
    """A table cell as terraform-docs writes it with escape: true and html: true."""
    if text == "":
        return "n/a"

    def normal(seg, first, last):
        return normalize_urls(convert_multiline_table(escape_characters(seg, pipe=True)))

    def code(seg, first, last):
        seg = seg.strip().replace("\n", "<br/>").replace("\r", "")
        return f"<pre>{seg}</pre>"

    return _segments(text, "```", normal, code)


def anchor(kind: str, name: str) -> str:
    return f'<a name="{kind}_{name}"></a> [{esc(name)}](#{kind}\\_{esc(name)})'


def render_value(value) -> str:
    if isinstance(value, (dict, list)) and value:
        body = json.dumps(value, indent=2).replace("\n", "<br/>")
        return f"<pre>{body}</pre>"
    return f"`{json.dumps(value)}`"


def render_type(type_src: str | None) -> str:
    if not type_src:
        return "`any`"
    if "\n" in type_src:
        return f"<pre>{type_src.replace(chr(10), '<br/>')}</pre>"
    return f"`{type_src}`"


def render_default(var: Variable) -> str:
    if not var.has_default:
        return "n/a"
    return render_value(var.default)


def registry_link(rtype: str, kind: str) -> str:
    provider, _, rest = rtype.partition("_")
    section = "resources" if kind == "resource" else "data-sources"
    return f"https://registry.terraform.io/providers/hashicorp/{provider}/latest/docs/{section}/{rest}"


def generate(root: Root, cfg: dict) -> str:
    level = "#" * int(cfg.get("settings", {}).get("indent", 2))
    out: list[str] = []

    out.append(f"{level} Requirements\n")
    reqs = []
    if root.required_version:
        reqs.append(("terraform", root.required_version))
    for name, spec in sorted(root.required_providers.items()):
        reqs.append((name, spec.get("version", "n/a")))
    if reqs:
        out.append("| Name | Version |\n|------|---------|")
        for name, version in reqs:
            out.append(f"| {anchor('requirement', name)} | {version} |")
    else:
        out.append("No requirements.")

    out.append(f"\n{level} Providers\n")
    used = set()
    for kind in ("resource", "data"):
        for rtype, _, _, _ in root.resources(kind):
            used.add(rtype.split("_", 1)[0])
    if used:
        out.append("| Name | Version |\n|------|---------|")
        for name in sorted(used):
            version = root.required_providers.get(name, {}).get("version", "n/a")
            out.append(f"| {anchor('provider', name)} | {version} |")
    else:
        out.append("No providers.")

    out.append(f"\n{level} Modules\n")
    if root.modules:
        out.append("| Name | Source | Version |\n|------|--------|---------|")
        for name, source, version, _ in root.modules:
            out.append(f"| {anchor('module', name)} | {source} | {version or 'n/a'} |")
    else:
        out.append("No modules.")

    out.append(f"\n{level} Resources\n")
    rows = []
    for kind, label in (("resource", "resource"), ("data", "data source")):
        for rtype, rname, _, _ in root.resources(kind):
            rows.append((f"{rtype}.{rname}", f"| [{rtype}.{rname}]({registry_link(rtype, kind)}) | {label} |"))
    if rows:
        out.append("| Name | Type |\n|------|------|")
        out.extend(row for _, row in sorted(rows))
    else:
        out.append("No resources.")

    out.append(f"\n{level} Inputs\n")
    if root.variables:
        out.append("| Name | Description | Type | Default | Required |\n|------|-------------|------|---------|:--------:|")
        for v in root.variables:
            out.append(
                f"| {anchor('input', v.name)} | {cell(v.description or '')} | {cell(render_type(v.type_src))} "
                f"| {cell(render_default(v))} | {'no' if v.has_default else 'yes'} |"
            )
    else:
        out.append("No inputs.")

    out.append(f"\n{level} Outputs\n")
    if root.outputs:
        out.append("| Name | Description |\n|------|-------------|")
        for o in root.outputs:
            out.append(f"| {anchor('output', o.name)} | {cell(o.description or '')} |")
    else:
        out.append("No outputs.")

    return "\n".join(out) + "\n"


def markers(cfg: dict) -> tuple[str, str]:
    template = cfg.get("output", {}).get("template", "")
    lines = [line for line in template.splitlines() if line.strip().startswith("<!--")]
    if len(lines) >= 2:
        return lines[0].strip(), lines[-1].strip()
    return "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"


def inject(readme: str, content: str, begin: str, end: str) -> str:
    block = f"{begin}\n{content}{end}\n"
    if begin in readme and end in readme:
        head, rest = readme.split(begin, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail.lstrip("\n")
    if readme and not readme.endswith("\n"):
        readme += "\n"
    return readme + ("\n" if readme else "") + block


def cmd_docs(roots: list[Path], check: bool) -> int:
    cfg = load_config()
    begin, end = markers(cfg)
    target = cfg.get("output", {}).get("file", "README.md")
    stale = 0
    for path in roots:
        root = load_root(path)
        if root.errors:
            print("\n".join(root.errors), file=sys.stderr)
            return 2
        readme_path = path / target
        current = readme_path.read_text() if readme_path.exists() else ""
        wanted = inject(current, generate(root, cfg), begin, end)
        if current == wanted:
            continue
        if check:
            stale += 1
            print(f"{readme_path.relative_to(REPO)}: out of date; run ./terraform-docs.sh", file=sys.stderr)
        else:
            readme_path.write_text(wanted)
            print(f"{readme_path.relative_to(REPO)} updated")
    return 1 if stale else 0


# --------------------------------------------------------------------------
# README tables against the .tf files


def table_rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        line = line.strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        rows.append(cells)
    return rows[1:]  # drop the header row


def readme_section(text: str, title: str) -> str | None:
    m = re.search(rf"^#+ {title}\s*$(.*?)(?=^#+ |<!-- END_TF_DOCS -->|\Z)", text, re.M | re.S)
    return m.group(1) if m else None


def row_name(first_cell: str) -> str:
    m = re.search(r"\[([^\]]+)\]", first_cell)
    return (m.group(1) if m else first_cell).replace("\\_", "_")


def cmd_readme(roots: list[Path]) -> int:
    failures = []
    for path in roots:
        root = load_root(path)
        readme = path / "README.md"
        if not readme.exists():
            failures.append(f"{readme.relative_to(REPO)}: missing")
            continue
        text = readme.read_text()
        inputs = readme_section(text, "Inputs")
        outputs = readme_section(text, "Outputs")
        if inputs is None or outputs is None:
            failures.append(f"{readme.relative_to(REPO)}: no Inputs/Outputs sections")
            continue
        listed = {row_name(r[0]): r for r in table_rows(inputs)}
        declared = {v.name: v for v in root.variables}
        for name in sorted(set(listed) - set(declared)):
            failures.append(f"{readme.relative_to(REPO)}: input {name} is listed but not declared")
        for name in sorted(set(declared) - set(listed)):
            failures.append(f"{readme.relative_to(REPO)}: variable {name} is not listed")
        for name in sorted(set(listed) & set(declared)):
            row, var = listed[name], declared[name]
            if len(row) != 5:
                failures.append(f"{readme.relative_to(REPO)}: input {name}: expected 5 columns")
                continue
            expect = {
                "type": cell(render_type(var.type_src)),
                "default": cell(render_default(var)),
                "required": "no" if var.has_default else "yes",
            }
            got = {"type": row[2], "default": row[3], "required": row[4]}
            for key in expect:
                if expect[key] != got[key]:
                    failures.append(
                        f"{readme.relative_to(REPO)}: input {name}: {key} is {got[key]!r}, .tf says {expect[key]!r}"
                    )
        listed_out = {row_name(r[0]) for r in table_rows(outputs)}
        declared_out = {o.name for o in root.outputs}
        for name in sorted(listed_out - declared_out):
            failures.append(f"{readme.relative_to(REPO)}: output {name} is listed but not declared")
        for name in sorted(declared_out - listed_out):
            failures.append(f"{readme.relative_to(REPO)}: output {name} is not listed")
    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------
# Project invariants


ACCOUNT_ID = re.compile(r"(?<![0-9A-Za-z.])[0-9]{12}(?![0-9])")
SECRETS = [
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "AWS access key ID"),
    (re.compile(r"aws_secret_access_key|secret_key\s*=", re.I), "AWS secret key setting"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "private key"),
    (re.compile(r"\b(password|token)\s*=\s*\"[^\"$]{6,}\"", re.I), "literal password or token"),
]


def policy_actions(root: Root) -> dict[str, tuple[set[str], set[str]]]:
    """DynamoDB actions and the resources they are granted on, for every
    aws_iam_policy_document, by document name."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for rtype, rname, body, _ in root.resources("data"):
        if rtype != "aws_iam_policy_document":
            continue
        actions: set[str] = set()
        resources: set[str] = set()
        for st in body.get("statement", []):
            st_actions = {unwrap(a) for a in (first(st, "actions", []) or [])}
            if any(a.lower().startswith("dynamodb:") or a == "*" for a in st_actions):
                actions |= st_actions
                resources |= {unwrap(r) for r in (first(st, "resources", []) or [])}
        found[rname] = (actions, resources)
    return found


def cross_root_wiring(roots: list[Path]) -> list[str]:
    """Re-running `terraform apply` with no arguments must change nothing, so no
    root may need a value that only a -var flag can bring: every variable has a
    default, and none is named after another root's output (a value that root
    knows): such values are found by data source or remote state instead."""
    failures = []
    loaded = {path.name: load_root(path) for path in roots}
    outputs = {name: {o.name for o in root.outputs} for name, root in loaded.items()}
    for name, root in loaded.items():
        for v in root.variables:
            where = f"{name}/{v.file}:{v.line}: variable {v.name}"
            if not v.has_default:
                failures.append(f"{where} has no default: an apply without -var cannot run")
            for other, names in outputs.items():
                if other == name:
                    continue
                prefix = other.replace("-", "_") + "_"
                fed = {n for n in names if v.name in (n, prefix + n, other.split("-")[0] + "_" + n)}
                # A name the other root also outputs is fine when the default is
                # that root's own default (a name to look up, not a value to pass).
                if fed and (v.default is None or v.default == [] or v.default == ""):
                    failures.append(
                        f"{where} carries output {sorted(fed)[0]} of {other} and has no usable default; "
                        "look it up (data source or terraform_remote_state) instead"
                    )
            mentioned = [o for o in loaded if o != name and re.search(rf"\b{re.escape(o)} root\b", v.description or "")]
            if mentioned and v.default in (None, [], "", {}):
                failures.append(
                    f"{where} takes a value from the {mentioned[0]} root and has no usable default; "
                    "look it up (data source or terraform_remote_state) instead"
                )
        text = "\n".join(root.texts.values())
        if re.search(r"enable_cluster_creator_admin_permissions\s*=\s*(true|var\.)", text):
            failures.append(f"{name}: enable_cluster_creator_admin_permissions must be false (explicit access entries only)")
    return failures


def cmd_invariants(roots: list[Path]) -> int:
    failures: list[str] = []
    seen_table = seen_policy = False

    def fail(msg: str):
        failures.append(msg)

    for path in roots:
        rel = path.relative_to(REPO)
        root = load_root(path)
        failures.extend(root.errors)
        if root.errors:
            continue

        for required in ("versions.tf", "providers.tf", "backend.tf", "main.tf", "variables.tf", "outputs.tf", "README.md"):
            if not (path / required).exists():
                fail(f"{rel}: {required} missing")

        # Backend: S3, native lock file, encrypted.
        backends = root.backends
        if len(backends) != 1 or backends[0][0] != "s3":
            fail(f"{rel}: needs exactly one backend \"s3\" block (found {[b[0] for b in backends]})")
        else:
            body = backends[0][1]
            if first(body, "use_lockfile") is not True:
                fail(f"{rel}: backend s3 must set use_lockfile = true")
            if first(body, "encrypt") is not True:
                fail(f"{rel}: backend s3 must set encrypt = true")
            if first(body, "kms_key_id") != STATE_KEY_ALIAS:
                fail(f"{rel}: backend s3 must set kms_key_id = {STATE_KEY_ALIAS!r} (the state key), or the S3 backend asks for SSE-S3")
            if "dynamodb_table" in body:
                fail(f"{rel}: backend s3 must not use a DynamoDB lock table")
            for key in ("bucket", "region"):
                if key in body:
                    fail(f"{rel}: backend {key} must come from -backend-config, not be committed")

        # Versions.
        if root.required_version != TERRAFORM_MIN_VERSION:
            fail(f"{rel}: required_version must be {TERRAFORM_MIN_VERSION!r} (is {root.required_version!r})")
        providers = root.required_providers
        if "aws" not in providers:
            fail(f"{rel}: required_providers must declare aws")
        for name, spec in providers.items():
            version = spec.get("version", "")
            if not re.match(r"^~>\s*\d+\.\d+$", version or ""):
                fail(f"{rel}: provider {name} must be pinned with ~> MAJOR.MINOR (is {version!r})")
            if not spec.get("source"):
                fail(f"{rel}: provider {name} has no source")
        for name, source, version, _ in root.modules:
            if not source.startswith("./") and not version:
                fail(f"{rel}: module {name} has no version pin")

        # Variables and outputs.
        for v in root.variables:
            where = f"{rel}/{v.file}:{v.line}: variable {v.name}"
            if not v.type_src:
                fail(f"{where} has no type")
            if not (v.description or "").strip():
                fail(f"{where} has no description")
            # Free-form scalars and lists can hold bad values; bools cannot
            # and tag maps take anything.
            needs_validation = v.type_src in ("string", "number") or (v.type_src or "").startswith("list(")
            if needs_validation and v.validations == 0:
                fail(f"{where} is a free-form {v.type_src} without a validation block")
        for o in root.outputs:
            if not (o.description or "").strip():
                fail(f"{rel}/{o.file}:{o.line}: output {o.name} has no description")

        # No account IDs or secrets.
        for fname, text in root.texts.items():
            for n, line in enumerate(text.splitlines(), 1):
                if ACCOUNT_ID.search(line):
                    fail(f"{rel}/{fname}:{n}: looks like an AWS account ID; derive it (aws_caller_identity) or pass it in")
                for pattern, what in SECRETS:
                    if pattern.search(line):
                        fail(f"{rel}/{fname}:{n}: {what} in code")

        # The counts table.
        for rtype, rname, body, fname in root.resources():
            if rtype != "aws_dynamodb_table":
                continue
            seen_table = True
            where = f"{rel}/{fname}: aws_dynamodb_table.{rname}"
            if first(body, "hash_key") != TABLE_HASH_KEY[0]:
                fail(f"{where}: hash_key must be {TABLE_HASH_KEY[0]!r} (is {first(body, 'hash_key')!r})")
            if "range_key" in body:
                fail(f"{where}: the service uses a partition key only; no range_key")
            attrs = {first(a, "name"): first(a, "type") for a in body.get("attribute", [])}
            if attrs != {TABLE_HASH_KEY[0]: TABLE_HASH_KEY[1]}:
                fail(f"{where}: attributes must be exactly {{{TABLE_HASH_KEY[0]}: {TABLE_HASH_KEY[1]}}} (are {attrs})")
            ttl = (body.get("ttl") or [{}])[0]
            if first(ttl, "attribute_name") != TABLE_TTL_ATTRIBUTE or first(ttl, "enabled") is not True:
                fail(f"{where}: TTL must be enabled on {TABLE_TTL_ATTRIBUTE!r}")
            if first(body, "billing_mode") != "PAY_PER_REQUEST":
                fail(f"{where}: billing_mode must be PAY_PER_REQUEST")
            pitr = (body.get("point_in_time_recovery") or [{}])[0]
            if first(pitr, "enabled") is not True:
                fail(f"{where}: point-in-time recovery must be enabled")
            sse = (body.get("server_side_encryption") or [{}])[0]
            if first(sse, "enabled") is not True:
                fail(f"{where}: server-side encryption must be enabled")
            if "deletion_protection_enabled" not in body:
                fail(f"{where}: deletion_protection_enabled must be set")

        # The service's IAM policy: exactly the DynamoDB actions it calls.
        for name, (actions, resources) in policy_actions(root).items():
            if not actions:
                continue
            dynamo = actions
            seen_policy = True
            if any("*" in a for a in dynamo):
                fail(f"{rel}: policy document {name} uses a wildcard action")
            if resources != {"data.aws_dynamodb_table.counts.arn"}:
                fail(f"{rel}: policy document {name} must grant DynamoDB actions on data.aws_dynamodb_table.counts.arn only (has {sorted(resources)})")
            if dynamo != SERVICE_DYNAMODB_ACTIONS:
                fail(
                    f"{rel}: policy document {name} grants {sorted(dynamo)}, "
                    f"the service needs exactly {sorted(SERVICE_DYNAMODB_ACTIONS)}"
                )
        for rtype, rname, body, fname in root.resources():
            if rtype.startswith("aws_iam") and "dynamodb:" in json.dumps(body):
                fail(f"{rel}/{fname}: {rtype}.{rname} carries an inline DynamoDB policy; use an aws_iam_policy_document")

    failures.extend(cross_root_wiring(roots))
    if not seen_table:
        fail("no aws_dynamodb_table found in the roots checked")
    if not seen_policy:
        fail("no IAM policy document granting DynamoDB actions found in the roots checked")
    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------
# Rendered manifests against the Terraform roots and the service's facts


def humantime_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unsupported duration {text!r}")
    return int(m.group(1)) * units[m.group(2)]


def var_default(root: Path, name: str):
    for v in load_root(root).variables:
        if v.name == name:
            return v.default
    raise KeyError(f"{root.name}: variable {name} not found")


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PriorityClass", "StorageClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
LB = "service.beta.kubernetes.io/aws-load-balancer-"


def namespace_in_terraform(namespace: str) -> list[str]:
    root = load_root(REPO / "eks-cluster")
    for rtype, _, body, fname in root.resources():
        if rtype != "kubernetes_namespace_v1":
            continue
        meta = first(body, "metadata", {})
        labels = first(meta, "labels", {}) or {}
        out = []
        if unwrap(first(meta, "name")) != "var.service_namespace":
            out.append(f"eks-cluster/{fname}: the namespace must be named var.service_namespace ({namespace})")
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            out.append(f"eks-cluster/{fname}: the namespace must enforce the restricted Pod Security Standard")
        return out
    return ["eks-cluster: no kubernetes_namespace_v1 makes the service's namespace"]


def check_service(svc: dict, overlay: str, vpc_cidr: str, serving: float) -> list[str]:
    out = []
    spec, ann = svc["spec"], svc["metadata"].get("annotations", {})
    ports = {p.get("port") for p in spec.get("ports", [])}
    if spec.get("type") != "LoadBalancer" or spec.get("loadBalancerClass") != "service.k8s.aws/nlb":
        out.append("Service must be a LoadBalancer of class service.k8s.aws/nlb (the AWS Load Balancer Controller)")
    if ann.get(LB + "nlb-target-type") != "ip":
        out.append("Service must use IP targets")
    if not spec.get("loadBalancerSourceRanges"):
        out.append("Service needs loadBalancerSourceRanges")
    m = re.search(r"deregistration_delay\.timeout_seconds=(\d+)", ann.get(LB + "target-group-attributes", ""))
    if not m:
        out.append("Service must set the target group's deregistration delay")
    elif int(m.group(1)) < serving:
        out.append(f"deregistration delay {m.group(1)}s is shorter than the time a terminating pod serves ({serving:g}s)")
    if overlay == "default":
        if ann.get(LB + "scheme") != "internal":
            out.append("default: the NLB must be internal")
        if spec.get("loadBalancerSourceRanges") != [vpc_cidr]:
            out.append(f"default: loadBalancerSourceRanges must be the VPC ({vpc_cidr})")
    else:
        if ann.get(LB + "scheme") != "internet-facing":
            out.append("public: the NLB must be internet-facing")
        if ports != {443}:
            out.append(f"public: the Service must expose 443 only (has {sorted(ports)}); plain HTTP is not exposed")
        if not re.match(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+$", ann.get(LB + "ssl-cert", "")):
            out.append("public: TLS needs an ACM certificate ARN (ssl-cert)")
        if ann.get(LB + "ssl-ports") not in ("443", "https"):
            out.append("public: TLS must be on 443 (ssl-ports)")
    return out


def cmd_manifests(rendered: Path, k8s_version: str, overlay: str = "default") -> int:
    failures: list[str] = []
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def one(kind: str) -> dict:
        items = by_kind.get(kind, [])
        if len(items) != 1:
            failures.append(f"expected one {kind}, found {len(items)}")
            return {}
        return items[0]

    namespace = var_default(REPO / "eks-cluster", "service_namespace")
    vpc_cidr = var_default(REPO / "eks-cluster", "vpc_cidr")
    timing: dict[str, float] = {}
    service_account = var_default(REPO / "eks-cluster", "service_account_name")
    table = var_default(REPO / "dynamodb", "table_name")
    cluster_version = var_default(REPO / "eks-cluster", "kubernetes_version")
    if not k8s_version.startswith(cluster_version + "."):
        failures.append(f"manifests are validated against {k8s_version}, the cluster runs {cluster_version}")

    if by_kind.get("Namespace"):
        failures.append("the rendering holds a Namespace: the eks-cluster root makes it, and the deploy role cannot (cluster-scoped)")
    failures.extend(namespace_in_terraform(namespace))
    for d in docs:
        if d["metadata"].get("namespace") != namespace:
            failures.append(f"{d['kind']}/{d['metadata']['name']} is not in namespace {namespace}")
        if d["kind"] in CLUSTER_SCOPED:
            failures.append(f"{d['kind']}/{d['metadata']['name']} is cluster-scoped; the deploy role cannot apply it")
    sa = one("ServiceAccount")
    if sa and sa["metadata"]["name"] != service_account:
        failures.append(f"ServiceAccount {sa['metadata']['name']!r} != eks-cluster service_account_name {service_account!r}")

    cm = one("ConfigMap")
    env = cm.get("data", {}) if cm else {}
    if env.get("FLIGHT_COUNTER_TABLE") != table:
        failures.append(f"ConfigMap FLIGHT_COUNTER_TABLE {env.get('FLIGHT_COUNTER_TABLE')!r} != dynamodb table_name {table!r}")
    if env.get("FLIGHT_COUNTER_STORE") != "dynamodb":
        failures.append("ConfigMap FLIGHT_COUNTER_STORE must be dynamodb")
    if env.get("FLIGHT_COUNTER_BIND") != "0.0.0.0:8080":
        failures.append("ConfigMap FLIGHT_COUNTER_BIND must be 0.0.0.0:8080")
    for key in env:
        if re.search(r"AWS_(SECRET|ACCESS_KEY|SESSION_TOKEN)", key):
            failures.append(f"ConfigMap must not carry AWS credentials ({key})")

    dep = one("Deployment")
    if dep:
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        if "replicas" in spec:
            failures.append("Deployment sets replicas: every apply would reset the HorizontalPodAutoscaler's count")
        if spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") != 0:
            failures.append("Deployment rolling update must have maxUnavailable: 0")
        if pod.get("serviceAccountName") != service_account:
            failures.append("Deployment must run as the Pod Identity ServiceAccount")
        zones = [c for c in pod.get("topologySpreadConstraints", []) if c.get("topologyKey") == "topology.kubernetes.io/zone"]
        if not zones:
            failures.append("Deployment must spread pods across zones")
        containers = pod.get("containers", [])
        main = containers[0] if containers else {}
        drain = humantime_seconds(env.get("FLIGHT_COUNTER_DRAIN_TIMEOUT", "10s"))
        delay = humantime_seconds(env.get("FLIGHT_COUNTER_SHUTDOWN_DELAY", "0s"))
        pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        serving = pre_stop + delay + drain
        if grace <= serving:
            failures.append(f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop}s + shutdown delay {delay:g}s + drain {drain:g}s")
        if pre_stop < 10:
            failures.append(f"preStop sleep {pre_stop}s is too short for the NLB to stop sending to a deregistered target")
        timing["serving"] = serving
        probes = {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        for probe, path in probes.items():
            got = main.get(probe, {}).get("httpGet", {})
            if got.get("path") != path or got.get("port") not in (8080, "http"):
                failures.append(f"{probe} must be httpGet {path} on port 8080")
        ports = [p.get("containerPort") for p in main.get("ports", [])]
        if ports != [8080]:
            failures.append(f"container must expose 8080 only (has {ports})")
        sc = main.get("securityContext", {})
        psc = pod.get("securityContext", {})
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        if not isinstance(uid, int) or uid == 0:
            failures.append("container must run as a numeric non-root UID")
        for key, want in (("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
            if sc.get(key) is not want:
                failures.append(f"container securityContext.{key} must be {want}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            failures.append("container must drop ALL capabilities")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
        if seccomp.get("type") != "RuntimeDefault":
            failures.append("seccompProfile must be RuntimeDefault")
        resources = main.get("resources", {})
        if not resources.get("requests") or not resources.get("limits"):
            failures.append("container needs resource requests and limits")
        for e in main.get("env", []):
            if re.search(r"AWS_(SECRET|ACCESS_KEY)", e.get("name", "")):
                failures.append("Deployment must not carry AWS keys")

    svc = one("Service")
    if svc:
        failures.extend(check_service(svc, overlay, vpc_cidr, timing.get("serving", 0)))
    if overlay == "public":
        if not env.get("FLIGHT_COUNTER_API_KEYS_FILE"):
            failures.append("public: the service must require API keys (FLIGHT_COUNTER_API_KEYS_FILE)")
        if env.get("FLIGHT_COUNTER_PUBLIC_READS", "false").lower() not in ("false", "0", "no", "off"):
            failures.append("public: reads must need an API key too (no FLIGHT_COUNTER_PUBLIC_READS)")
        vols = [v for v in (dep or {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
                if v.get("secret", {}).get("secretName") == "flight-counter-api-keys"]
        if not vols or vols[0]["secret"].get("optional") is not False:
            failures.append("public: the API keys Secret must be mounted and not optional")
    # The service's own policy, plus any that only widen it to a named namespace (the
    # monitoring one): no rule may admit any source, and address blocks must be the VPC.
    policies = by_kind.get("NetworkPolicy", [])
    if [p["metadata"]["name"] for p in policies].count("flight-counter") != 1:
        failures.append("expected one NetworkPolicy named flight-counter")
    for netpol in policies:
        name = netpol["metadata"]["name"]
        for rule in netpol.get("spec", {}).get("ingress", []):
            sources = rule.get("from", [])
            if not sources:
                failures.append(f"NetworkPolicy {name}: an ingress rule admits any source")
            for source in sources:
                cidr = source.get("ipBlock", {}).get("cidr")
                namespace = source.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                if cidr and cidr != vpc_cidr:
                    failures.append(f"NetworkPolicy {name}: ingress source {cidr} must be the VPC ({vpc_cidr}), where the NLB's addresses are")
                elif "namespaceSelector" in source and not namespace:
                    failures.append(f"NetworkPolicy {name}: a namespace source must name one namespace")
    hpa = one("HorizontalPodAutoscaler")
    if hpa and not hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds"):
        failures.append("HPA needs a scale-down stabilisation window")
    one("PodDisruptionBudget")

    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


# Descriptions and what terraform-docs (escape: true, html: true) writes for
# them in a table cell; each follows a rule of its template/sanitizer.go.
ESCAPE_CASES = [
    # Underscores outside code are escaped...
    ("Set FLIGHT_COUNTER_TABLE to the table.", "Set FLIGHT\\_COUNTER\\_TABLE to the table."),
    # ...inside code spans they are not...
    ("Like `node_max_size` here.", "Like `node_max_size` here."),
    # ...nor in URLs (escaped, then put back)...
    ("See https://example.org/a_b/c_d for more.", "See https://example.org/a_b/c_d for more."),
    # ...nor around a word in emphasis.
    ("an _important_ note", "an _important_ note"),
    ("_start_of_line", "\\_start\\_of\\_line"),
    # Pipes are escaped outside code, newlines become <br/>, code blocks <pre>.
    ("either a | b", "either a \\| b"),
    ("first line\nsecond_line", "first line<br/>second\\_line"),
    ("Example:\n```\nx_y = 1\n```\n", "Example:<pre>x_y = 1</pre>"),
    ("", "n/a"),
]


def cmd_docs_selftest() -> int:
    bad = 0
    for text, want in ESCAPE_CASES:
        got = cell(text)
        if got != want:
            bad += 1
            print(f"cell({text!r}) = {got!r}, terraform-docs writes {want!r}", file=sys.stderr)
    print(f"{len(ESCAPE_CASES) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    docs = sub.add_parser("docs")
    docs.add_argument("--check", action="store_true")
    docs.add_argument("roots", nargs="+", type=Path)
    for name in ("readme", "invariants"):
        p = sub.add_parser(name)
        p.add_argument("roots", nargs="+", type=Path)
    sub.add_parser("docs-selftest")
    man = sub.add_parser("manifests")
    man.add_argument("rendered", type=Path)
    man.add_argument("--kubernetes-version", required=True)
    man.add_argument("--overlay", choices=["default", "public"], default="default")
    args = parser.parse_args()
    if args.cmd == "docs-selftest":
        return cmd_docs_selftest()
    if args.cmd == "manifests":
        return cmd_manifests(args.rendered, args.kubernetes_version, args.overlay)
    roots = [p.resolve() for p in args.roots]
    if args.cmd == "docs":
        return cmd_docs(roots, args.check)
    if args.cmd == "readme":
        return cmd_readme(roots)
    return cmd_invariants(roots)


if __name__ == "__main__":
    sys.exit(main())
