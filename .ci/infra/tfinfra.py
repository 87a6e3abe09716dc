#!/usr/bin/env python3
"""Terraform helpers for flight-counter's infrastructure checks.

Subcommands:
  docs [--check] ROOT...   write (or compare) each root's README section in
                           terraform-docs' markdown table format, between the
                           BEGIN_TF_DOCS/END_TF_DOCS markers
  readme ROOT...           check that each README's Inputs/Outputs tables list
                           exactly the root's variables (type, default,
                           required) and outputs
  manifests FILE --kubernetes-version V [--overlay O] [--selftest]
                           rendered Kubernetes manifests agree with the
                           Terraform roots and the service's facts (metrics
                           port apart, NetworkPolicy sources, deploy Role);
                           --selftest: each known mistake put into the
                           rendering is refused
  invariants ROOT...       project rules: parseable HCL, S3 backend with
                           lockfile and encryption, pinned versions, typed and
                           described variables, described outputs, no account
                           IDs or secrets, DynamoDB layout and IAM actions that
                           match the service, nothing that changes between two
                           applies of the same code
  refs ROOT...             what `terraform validate` cannot see before init:
                           no address declared twice; every var.x, local.x,
                           module.x, data.T.N and T.N referenced is declared;
                           required_version allows nothing older than 1.11
  refs-fixtures DIR...     each fixture (a root with one mistake, and the
                           messages expected in EXPECT) fails `refs` as
                           expected
  review-fixtures DIR...   the review's rules (part of `invariants`) refuse
                           every mistake of a fixture (EXPECT)
  validate ROOT...         `terraform validate -json` in each root, before
                           init: only errors that need a download pass
  validate-mirror --mirror DIR ROOT...
                           full `terraform validate` of the roots whose
                           providers a filesystem mirror holds (see
                           docs/terraform-ci.md)

Needs python-hcl2 (and PyYAML for the shared .terraform-docs.yml).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
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
# S3 native locking (use_lockfile) is GA from 1.11 on; experimental before.
TERRAFORM_MIN_VERSION = ">= 1.11"
TERRAFORM_OLDEST = (1, 11)
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
        text = _segments(text, "`", lambda seg, first, last: seg.replace("|", "\\|"), tick)
    return _segments(
        text, "`", lambda seg, first, last: "\n".join(_escape_underscores(x) for x in seg.split("\n")), tick
    )


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
            rows.append(
                (f"{rtype}.{rname}", f"| [{rtype}.{rname}]({registry_link(rtype, kind)}) | {label} |")
            )
    if rows:
        out.append("| Name | Type |\n|------|------|")
        out.extend(row for _, row in sorted(rows))
    else:
        out.append("No resources.")

    out.append(f"\n{level} Inputs\n")
    if root.variables:
        out.append(
            "| Name | Description | Type | Default | Required |\n|------|-------------|------|---------|:--------:|"
        )
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
            mentioned = [
                o for o in loaded if o != name and re.search(rf"\b{re.escape(o)} root\b", v.description or "")
            ]
            if mentioned and v.default in (None, [], "", {}):
                failures.append(
                    f"{where} takes a value from the {mentioned[0]} root and has no usable default; "
                    "look it up (data source or terraform_remote_state) instead"
                )
        text = "\n".join(root.texts.values())
        if re.search(r"enable_cluster_creator_admin_permissions\s*=\s*(true|var\.)", text):
            failures.append(
                f"{name}: enable_cluster_creator_admin_permissions must be false (explicit access entries only)"
            )
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

        for required in (
            "versions.tf",
            "providers.tf",
            "backend.tf",
            "main.tf",
            "variables.tf",
            "outputs.tf",
            "README.md",
        ):
            if not (path / required).exists():
                fail(f"{rel}: {required} missing")

        # Backend: S3, native lock file, encrypted.
        backends = root.backends
        if len(backends) != 1 or backends[0][0] != "s3":
            fail(f'{rel}: needs exactly one backend "s3" block (found {[b[0] for b in backends]})')
        else:
            body = backends[0][1]
            if first(body, "use_lockfile") is not True:
                fail(f"{rel}: backend s3 must set use_lockfile = true")
            if first(body, "encrypt") is not True:
                fail(f"{rel}: backend s3 must set encrypt = true")
            if first(body, "kms_key_id") != STATE_KEY_ALIAS:
                fail(
                    f"{rel}: backend s3 must set kms_key_id = {STATE_KEY_ALIAS!r} (the state key), or the S3 backend asks for SSE-S3"
                )
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
                    fail(
                        f"{rel}/{fname}:{n}: looks like an AWS account ID; derive it (aws_caller_identity) or pass it in"
                    )
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
                fail(
                    f"{where}: attributes must be exactly {{{TABLE_HASH_KEY[0]}: {TABLE_HASH_KEY[1]}}} (are {attrs})"
                )
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
                fail(
                    f"{rel}: policy document {name} must grant DynamoDB actions on data.aws_dynamodb_table.counts.arn only (has {sorted(resources)})"
                )
            if dynamo != SERVICE_DYNAMODB_ACTIONS:
                fail(
                    f"{rel}: policy document {name} grants {sorted(dynamo)}, "
                    f"the service needs exactly {sorted(SERVICE_DYNAMODB_ACTIONS)}"
                )
        for rtype, rname, body, fname in root.resources():
            if rtype.startswith("aws_iam") and "dynamodb:" in json.dumps(body):
                fail(
                    f"{rel}/{fname}: {rtype}.{rname} carries an inline DynamoDB policy; use an aws_iam_policy_document"
                )

        failures.extend(review_rules(root, path))

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


CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
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
            out.append(
                f"eks-cluster/{fname}: the namespace must be named var.service_namespace ({namespace})"
            )
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            out.append(
                f"eks-cluster/{fname}: the namespace must enforce the restricted Pod Security Standard"
            )
        return out
    return ["eks-cluster: no kubernetes_namespace_v1 makes the service's namespace"]


def cidrsubnet(prefix: str, newbits: int, netnum: int) -> str:
    """Terraform's cidrsubnet()."""
    import ipaddress

    net = ipaddress.ip_network(prefix)
    size = 2 ** (net.max_prefixlen - net.prefixlen - newbits)
    return str(ipaddress.ip_network((int(net.network_address) + netnum * size, net.prefixlen + newbits)))


def terraform_subnets() -> dict[str, list[str]]:
    """The private and public subnet CIDRs of the eks-cluster root, evaluated
    from its locals (`[for i in range(N) : cidrsubnet(var.vpc_cidr, B, [K +] i)]`)
    with the vpc_cidr default."""
    root = load_root(REPO / "eks-cluster")
    vpc = var_default(REPO / "eks-cluster", "vpc_cidr")
    found = {}
    for _, item in root.each("locals"):
        for name in ("private_subnets", "public_subnets"):
            if name not in item:
                continue
            expr = first(item, name)
            m = re.fullmatch(
                r"\$\{\[for (\w+) in range\((\d+)\) : cidrsubnet\(var\.vpc_cidr,\s*(\d+),\s*(?:(\d+)\s*\+\s*)?(\w+)\)\]\}",
                expr,
            )
            if not m or m.group(5) != m.group(1):
                raise SystemExit(
                    f"eks-cluster: local {name} = {expr}: not a layout this check can evaluate; update terraform_subnets()"
                )
            count, newbits, offset = int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)
            found[name] = [cidrsubnet(vpc, newbits, offset + i) for i in range(count)]
    if set(found) != {"private_subnets", "public_subnets"}:
        raise SystemExit("eks-cluster: locals private_subnets and public_subnets not found")
    return found


def deployer_role_rules() -> list[tuple[set, set, set]]:
    """(api groups, resources, verbs) of the deployer Role in eks-cluster/access.tf."""
    root = load_root(REPO / "eks-cluster")
    local_values = {}
    for _, item in root.each("locals"):
        for name, value in item.items():
            if not name.startswith("__"):
                local_values[name] = value[0] if isinstance(value, list) else value

    def resolve(values):
        out = set()
        for v in flat(values):
            ref = re.fullmatch(r"\$\{local\.(\w+)\}", str(v))
            out |= set(flat(local_values.get(ref.group(1), []))) if ref else {v}
        return out

    for rtype, rname, body, _ in root.resources():
        if rtype == "kubernetes_role_v1" and rname == "deployer":
            return [
                (
                    resolve(r.get("api_groups", [])),
                    resolve(r.get("resources", [])),
                    resolve(r.get("verbs", [])),
                )
                for r in body.get("rule", [])
            ]
    return []


def plural(kind: str) -> str:
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


# Kinds of the optional monitoring overlay, applied by the same deploy role.
MONITORING_KINDS = [
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
]
DEPLOY_VERBS = {"get", "create", "patch"}  # kubectl apply --server-side


def check_deployer_role(docs: list[dict]) -> list[str]:
    out = []
    rules = deployer_role_rules()
    if not rules:
        return ["eks-cluster: no kubernetes_role_v1.deployer (the deploy role's rights in the namespace)"]
    for groups, resources, verbs in rules:
        if "*" in groups | resources | verbs:
            out.append(f"deployer Role: no wildcards ({sorted(groups)} {sorted(resources)} {sorted(verbs)})")
        if resources & {"secrets", "secrets/*"}:
            out.append("deployer Role: grants Secrets; the deploy role must not read them")
        if verbs & {"escalate", "bind", "impersonate"} or resources & {
            "roles",
            "rolebindings",
            "serviceaccounts/token",
        }:
            out.append(
                f"deployer Role: grants {sorted((verbs | resources) & {'escalate', 'bind', 'impersonate', 'roles', 'rolebindings', 'serviceaccounts/token'})}"
            )
    kinds = {(d["apiVersion"], d["kind"]) for d in docs} | set(MONITORING_KINDS)
    for api_version, kind in sorted(kinds):
        group = api_version.split("/")[0] if "/" in api_version else ""
        resource = plural(kind)
        granted = set().union(*[v for g, r, v in rules if group in g and resource in r] or [set()])
        if not DEPLOY_VERBS <= granted:
            out.append(
                f"deployer Role: {kind} ({group or 'core'}/{resource}) needs {sorted(DEPLOY_VERBS - granted)} for kubectl apply --server-side"
            )
    return out


def bind_port(value: str | None) -> int | None:
    m = re.fullmatch(r".*:(\d+)", value or "")
    return int(m.group(1)) if m else None


def check_metrics_port(docs: list[dict], env: dict, main: dict, pod_template: dict) -> list[str]:
    """/metrics on its own listener: a container port of its own, scraped there,
    exposed by no load balancer, reachable from the monitoring namespace only."""
    out = []
    api_port, metrics_port = (
        bind_port(env.get("FLIGHT_COUNTER_BIND")),
        bind_port(env.get("FLIGHT_COUNTER_METRICS_BIND")),
    )
    if metrics_port is None:
        return [
            "ConfigMap FLIGHT_COUNTER_METRICS_BIND must be set (host:port): /metrics is served apart from the API"
        ]
    if metrics_port == api_port:
        out.append(f"FLIGHT_COUNTER_METRICS_BIND uses the API port {api_port}; it must be a port of its own")
    ports = {p.get("name"): p.get("containerPort") for p in main.get("ports", [])}
    if ports != {"http": api_port, "metrics": metrics_port}:
        out.append(
            f"container ports must be exactly http {api_port} and metrics {metrics_port} (has {ports})"
        )
    ann = pod_template.get("metadata", {}).get("annotations", {})
    if ann.get("prometheus.io/port") != str(metrics_port) or ann.get("prometheus.io/path") != "/metrics":
        out.append(f"scrape annotations must name the metrics port {metrics_port} and /metrics (has {ann})")
    metrics = {"metrics", metrics_port}
    for svc in (d for d in docs if d["kind"] == "Service"):
        if svc["spec"].get("type") not in ("LoadBalancer", "NodePort"):
            continue
        for p in svc["spec"].get("ports", []):
            if p.get("port") in metrics or p.get("targetPort", p.get("port")) in metrics:
                out.append(
                    f"Service {svc['metadata']['name']} ({svc['spec']['type']}) exposes the metrics port: {p}"
                )
    admitted = False
    for np in (d for d in docs if d["kind"] == "NetworkPolicy"):
        for rule in np["spec"].get("ingress", []):
            sources = rule.get("from", [])
            only_monitoring = bool(sources) and all(
                set(s) == {"namespaceSelector"}
                and s["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
                == "monitoring"
                for s in sources
            )
            rule_ports = [p.get("port") for p in rule.get("ports", [])]
            on_metrics = not rule_ports or any(p in metrics for p in rule_ports)
            if on_metrics and not only_monitoring:
                out.append(
                    f"NetworkPolicy {np['metadata']['name']}: a rule admits {sources or 'any source'} on "
                    f"{'every port' if not rule_ports else 'the metrics port'}; only the monitoring namespace may reach it"
                )
            admitted |= on_metrics and only_monitoring and bool(rule_ports)
    if not admitted:
        out.append("no NetworkPolicy admits the monitoring namespace on the metrics port")
    return out


def check_service(svc: dict, overlay: str, vpc_cidr: str, serving: float) -> list[str]:
    out = []
    spec, ann = svc["spec"], svc["metadata"].get("annotations", {})
    ports = {p.get("port") for p in spec.get("ports", [])}
    if spec.get("type") != "LoadBalancer" or spec.get("loadBalancerClass") != "service.k8s.aws/nlb":
        out.append(
            "Service must be a LoadBalancer of class service.k8s.aws/nlb (the AWS Load Balancer Controller)"
        )
    if ann.get(LB + "nlb-target-type") != "ip":
        out.append("Service must use IP targets")
    if not spec.get("loadBalancerSourceRanges"):
        out.append("Service needs loadBalancerSourceRanges")
    m = re.search(r"deregistration_delay\.timeout_seconds=(\d+)", ann.get(LB + "target-group-attributes", ""))
    if not m:
        out.append("Service must set the target group's deregistration delay")
    elif int(m.group(1)) < serving:
        out.append(
            f"deregistration delay {m.group(1)}s is shorter than the time a terminating pod serves ({serving:g}s)"
        )
    if overlay == "default":
        if ann.get(LB + "scheme") != "internal":
            out.append("default: the NLB must be internal")
        if spec.get("loadBalancerSourceRanges") != [vpc_cidr]:
            out.append(f"default: loadBalancerSourceRanges must be the VPC ({vpc_cidr})")
    else:
        if ann.get(LB + "scheme") != "internet-facing":
            out.append("public: the NLB must be internet-facing")
        if ports != {443}:
            out.append(
                f"public: the Service must expose 443 only (has {sorted(ports)}); plain HTTP is not exposed"
            )
        if not re.match(
            r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+$", ann.get(LB + "ssl-cert", "")
        ):
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
        failures.append(
            "the rendering holds a Namespace: the eks-cluster root makes it, and the deploy role cannot (cluster-scoped)"
        )
    failures.extend(namespace_in_terraform(namespace))
    for d in docs:
        if d["metadata"].get("namespace") != namespace:
            failures.append(f"{d['kind']}/{d['metadata']['name']} is not in namespace {namespace}")
        if d["kind"] in CLUSTER_SCOPED:
            failures.append(
                f"{d['kind']}/{d['metadata']['name']} is cluster-scoped; the deploy role cannot apply it"
            )
    sa = one("ServiceAccount")
    if sa and sa["metadata"]["name"] != service_account:
        failures.append(
            f"ServiceAccount {sa['metadata']['name']!r} != eks-cluster service_account_name {service_account!r}"
        )

    cm = one("ConfigMap")
    env = cm.get("data", {}) if cm else {}
    if env.get("FLIGHT_COUNTER_TABLE") != table:
        failures.append(
            f"ConfigMap FLIGHT_COUNTER_TABLE {env.get('FLIGHT_COUNTER_TABLE')!r} != dynamodb table_name {table!r}"
        )
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
            failures.append(
                "Deployment sets replicas: every apply would reset the HorizontalPodAutoscaler's count"
            )
        if spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") != 0:
            failures.append("Deployment rolling update must have maxUnavailable: 0")
        if pod.get("serviceAccountName") != service_account:
            failures.append("Deployment must run as the Pod Identity ServiceAccount")
        zones = [
            c
            for c in pod.get("topologySpreadConstraints", [])
            if c.get("topologyKey") == "topology.kubernetes.io/zone"
        ]
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
            failures.append(
                f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop}s + shutdown delay {delay:g}s + drain {drain:g}s"
            )
        if pre_stop < 10:
            failures.append(
                f"preStop sleep {pre_stop}s is too short for the NLB to stop sending to a deregistered target"
            )
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
        failures.extend(check_metrics_port(docs, env, main, spec["template"]))
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
        vols = [
            v
            for v in (dep or {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
            if v.get("secret", {}).get("secretName") == "flight-counter-api-keys"
        ]
        if not vols or vols[0]["secret"].get("optional") is not False:
            failures.append("public: the API keys Secret must be mounted and not optional")
    # The service's own policy, plus any that only widen it to a named namespace (the
    # monitoring one): no rule may admit any source, and address blocks must be the subnets
    # the NLB lives in (the private ones; the public ones too for the internet-facing NLB).
    subnets = terraform_subnets()
    nlb_subnets = subnets["private_subnets"] + (subnets["public_subnets"] if overlay == "public" else [])
    policies = by_kind.get("NetworkPolicy", [])
    if [p["metadata"]["name"] for p in policies].count("flight-counter") != 1:
        failures.append("expected one NetworkPolicy named flight-counter")
    for netpol in policies:
        name = netpol["metadata"]["name"]
        for rule in netpol.get("spec", {}).get("ingress", []):
            sources = rule.get("from", [])
            if not sources:
                failures.append(f"NetworkPolicy {name}: an ingress rule admits any source")
            cidrs = [s["ipBlock"]["cidr"] for s in sources if "ipBlock" in s]
            if cidrs and sorted(cidrs) != sorted(nlb_subnets):
                failures.append(
                    f"NetworkPolicy {name}: ipBlock sources {cidrs} must be exactly the subnets the "
                    f"{'internet-facing' if overlay == 'public' else 'internal'} NLB lives in, from the "
                    f"eks-cluster layout: {nlb_subnets}"
                )
            for source in sources:
                if source.get("ipBlock", {}).get("except"):
                    failures.append(f"NetworkPolicy {name}: ipBlock except is not expected")
                namespace = (
                    source.get("namespaceSelector", {})
                    .get("matchLabels", {})
                    .get("kubernetes.io/metadata.name")
                )
                if "namespaceSelector" in source and not namespace:
                    failures.append(f"NetworkPolicy {name}: a namespace source must name one namespace")
    failures.extend(check_deployer_role(docs))
    hpa = one("HorizontalPodAutoscaler")
    if hpa and not hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds"):
        failures.append("HPA needs a scale-down stabilisation window")
    one("PodDisruptionBudget")

    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------
# Rules that keep the findings of a review fixed (see docs/deploy-aws.md, "What a re-apply
# changes", and eks-cluster/README.md).

SERVICE_DYNAMODB_SOURCE = REPO / "app" / "src" / "store" / "dynamodb" / "mod.rs"
# Data sources that return a new secret on every read: a resource argument fed
# from one changes at every plan.
TOKEN_DATA_SOURCES = {
    "aws_ecrpublic_authorization_token",
    "aws_ecr_authorization_token",
    "aws_eks_cluster_auth",
    "aws_codeartifact_authorization_token",
}
# Functions whose result differs between two plans of the same code.
UNSTABLE_FUNCTIONS = re.compile(r"(?<![\w.])(timestamp|plantimestamp|uuid|uuidv5|bcrypt)\s*\(")
# Newest amd64 generation of instance categories that stop short of the
# current ones (t3/t3a; t4g is arm64) or have no amd64 types at all (a1).
AMD64_NEWEST_GENERATION = {"t": 3, "a": 0}
# Values the pinned charts do not have (checked in the helm_release values).
UNKNOWN_CHART_VALUES = {"karpenter": ["webhook"]}
# Variables whose empty default must stop the plan with a message.
REQUIRED_LISTS = {"eks-cluster": ["endpoint_public_access_cidrs", "cluster_admin_role_trusted_arns"]}


def service_put_prefixes() -> set[str]:
    """The partition-key prefixes of the only items the service writes with a
    Put (app/src/store/dynamodb/mod.rs, read only)."""
    text = SERVICE_DYNAMODB_SOURCE.read_text()
    found = dict(re.findall(r'pub const (KEY_RECORD_PREFIX|BATCH_RECORD_PREFIX): &str = "([^"]+)";', text))
    if set(found) != {"KEY_RECORD_PREFIX", "BATCH_RECORD_PREFIX"}:
        raise SystemExit(
            f"{SERVICE_DYNAMODB_SOURCE.relative_to(REPO)}: KEY_RECORD_PREFIX/BATCH_RECORD_PREFIX not found"
        )
    return set(found.values())


def flat(values) -> list:
    out = []
    for v in values if isinstance(values, list) else [values]:
        out.extend(flat(v) if isinstance(v, list) else [v])
    return out


def conditions(statement: dict) -> list[tuple[str, str, list]]:
    return [
        (first(c, "test"), first(c, "variable"), flat(c.get("values", [])))
        for c in statement.get("condition", [])
    ]


def block_text(root: Root, fname: str, body: dict) -> str:
    lines = root.texts[fname].splitlines()
    return "\n".join(lines[body.get("__start_line__", 1) - 1 : body.get("__end_line__", len(lines))])


def list_positions_as_keys(root: Root, rel) -> list[str]:
    """Maps built with `{for i, x in <list> : "...${i}..." => ...}` are keyed by
    list position: dropping one element re-keys (destroys and re-creates)
    everything after it."""
    out = []
    list_vars = {v.name for v in root.variables if (v.type_src or "").startswith(("list(", "tuple("))}
    list_start = re.compile(r"^(concat|sort|flatten|tolist|range|distinct|compact|reverse|slice)\s*\(|^\[")
    codes = {fname: code_only(text) for fname, text in root.texts.items()}
    list_locals = set()
    for code in codes.values():
        for m in re.finditer(rf"(?m)^\s*({NAME})\s*=\s*(\S.*)$", code):
            if list_start.match(m.group(2)):
                list_locals.add(m.group(1))
    for fname, code in codes.items():
        for m in re.finditer(rf"\{{\s*for\s+({NAME})\s*,\s*{NAME}\s+in\s+([^:]+?)\s*:\s*([^\n]*?)=>", code):
            index, collection, key = m.groups()
            collection = collection.strip()
            is_list = bool(list_start.match(collection)) or any(
                re.fullmatch(rf"{kind}\.{re.escape(n)}", collection)
                for kind, names in (("var", list_vars), ("local", list_locals))
                for n in names
            )
            if is_list and re.search(rf"\b{re.escape(index)}\b", key):
                line = code.count("\n", 0, m.start()) + 1
                out.append(
                    f"{rel}/{fname}:{line}: a map keyed by list position ({index} of {collection}); key it by a name"
                )
    return out


def review_rules(root: Root, path: Path) -> list[str]:
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    out = []
    # Nothing that changes between two plans of the same code.
    for fname, text in root.texts.items():
        code = code_only(text)
        for m in UNSTABLE_FUNCTIONS.finditer(code):
            out.append(
                f"{rel}/{fname}:{code.count(chr(10), 0, m.start()) + 1}: {m.group(1)}() differs at every plan"
            )
    for rtype, rname, _body, fname in root.resources("data"):
        if rtype in TOKEN_DATA_SOURCES:
            out.append(
                f"{rel}/{fname}: data.{rtype}.{rname} returns a new token at every read; every plan would change what uses it"
            )
    for rtype, rname, body, fname in root.resources():
        if rtype == "helm_release":
            for key in ("repository_username", "repository_password", "repository_key_file"):
                if key in body:
                    out.append(
                        f"{rel}/{fname}: helm_release.{rname} sets {key}; the charts are public, and a token changes every plan"
                    )
            chart = first(body, "chart")
            for value in UNKNOWN_CHART_VALUES.get(chart, []):
                if re.search(rf"\b{value}\s*=", code_only(block_text(root, fname, body))):
                    out.append(
                        f"{rel}/{fname}: helm_release.{rname}: {value} is not a value of the {chart} chart"
                    )
        if rtype == "aws_eks_addon":
            deps = [unwrap(d) for d in flat(body.get("depends_on", []))]
            if "module.eks" not in deps:
                out.append(
                    f"{rel}/{fname}: aws_eks_addon.{rname} must depend on module.eks (its node group): without nodes the add-on sits DEGRADED"
                )
    for name, source, _, fname in root.modules:
        if source == "terraform-aws-modules/eks/aws":
            body = next(b for f, item in root.each("module") for n, b in item.items() if n == name)
            if first(body, "enable_irsa") is not False:
                out.append(
                    f"{rel}/{fname}: module.{name} must set enable_irsa = false (Pod Identity only; the IRSA provider's thumbprint is read at every plan)"
                )
            if "kms_key_administrators" not in body:
                out.append(
                    f"{rel}/{fname}: module.{name} must set kms_key_administrators (left out, it is whoever runs the apply)"
                )
            if not re.search(
                r"use_latest_ami_release_version\s*=\s*false", code_only(block_text(root, fname, body))
            ):
                out.append(
                    f"{rel}/{fname}: module.{name}: node groups must set use_latest_ami_release_version = false (else a new AMI rolls them at the next apply)"
                )
    out.extend(list_positions_as_keys(root, rel))

    # IAM: Pod Identity roles trust one ServiceAccount of one cluster; no
    # account root is trusted; PutItem only for the service's record prefixes.
    for rtype, rname, body, fname in root.resources("data"):
        if rtype != "aws_iam_policy_document":
            continue
        for st in body.get("statement", []):
            principals = [
                (first(p, "type"), flat(p.get("identifiers", []))) for p in st.get("principals", [])
            ]
            conds = conditions(st)
            variables = {v for _, v, _ in conds}
            if any(t == "Service" and "pods.eks.amazonaws.com" in ids for t, ids in principals):
                needed = [
                    ("the cluster", {"aws:RequestTag/eks-cluster-arn", "aws:RequestTag/eks-cluster-name"}),
                    ("the namespace", {"aws:RequestTag/kubernetes-namespace"}),
                    ("the service account", {"aws:RequestTag/kubernetes-service-account"}),
                ]
                for what, keys in needed:
                    if not variables & keys:
                        out.append(
                            f"{rel}/{fname}: {rname}: a Pod Identity trust without a condition on {what} lets any association of the account assume the role"
                        )
            for t, ids in principals:
                if t == "AWS" and any(re.search(r":root\b|^\*$", str(i)) for i in ids):
                    out.append(
                        f"{rel}/{fname}: {rname}: trusts an account root or everyone; name the principals"
                    )
            actions = {unwrap(a) for a in flat(st.get("actions", []))}
            leading = [c for c in conds if c[1] == "dynamodb:LeadingKeys"]
            if "dynamodb:PutItem" in actions:
                wanted = {p + "*" for p in service_put_prefixes()}
                like = [c for c in leading if c[0] == "ForAllValues:StringLike"]
                if not like or set(like[0][2]) != wanted:
                    out.append(
                        f"{rel}/{fname}: {rname}: PutItem must be limited with ForAllValues:StringLike dynamodb:LeadingKeys to {sorted(wanted)} (the service's Put prefixes)"
                    )
                if ("Null", "dynamodb:LeadingKeys", ["false"]) not in conds:
                    out.append(
                        f"{rel}/{fname}: {rname}: PutItem needs Null dynamodb:LeadingKeys = false (ForAllValues matches a request without keys)"
                    )
            elif leading and actions & {"dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:BatchGetItem"}:
                out.append(
                    f"{rel}/{fname}: {rname}: route items are read and updated by any key; no LeadingKeys condition on {sorted(actions)}"
                )

    # Variables whose empty default must stop the plan, with a message.
    for name in REQUIRED_LISTS.get(path.name, []):
        var = next((v for f, item in root.each("variable") for n, v in item.items() if n == name), None)
        conds = [unwrap(first(v, "condition")) for v in (var or {}).get("validation", [])]
        if not any(re.fullmatch(rf"length\(var\.{name}\)\s*>\s*0", c or "") for c in conds):
            out.append(
                f"{rel}: variable {name} needs a validation length(var.{name}) > 0, so an empty list stops the plan with a message"
            )

    # The NodePool's requirements can all be met at once.
    chart = path / "charts" / "karpenter-nodes" / "templates" / "nodes.yaml"
    if chart.exists():
        out.extend(nodepool_rules(chart))
    return out


def nodepool_rules(template: Path) -> list[str]:
    text = re.sub(r"\{\{[^}]*\}\}", '"templated"', template.read_text())
    out = []
    for doc in yaml.safe_load_all(text):
        if not doc or doc.get("kind") != "NodePool":
            continue
        reqs = {r["key"]: r for r in doc["spec"]["template"]["spec"].get("requirements", [])}
        arch = reqs.get("kubernetes.io/arch", {})
        category = reqs.get("karpenter.k8s.aws/instance-category", {})
        generation = reqs.get("karpenter.k8s.aws/instance-generation", {})
        if (
            arch.get("operator") != "In"
            or arch.get("values") != ["amd64"]
            or category.get("operator") != "In"
        ):
            continue
        floor = int(generation["values"][0]) + 1 if generation.get("operator") == "Gt" else 0
        for c in category.get("values", []):
            newest = AMD64_NEWEST_GENERATION.get(c)
            if newest is not None and floor > newest:
                out.append(
                    f"{template.relative_to(REPO) if template.is_relative_to(REPO) else template}: NodePool {doc['metadata']['name']}: category {c!r} can never match "
                    f"(its newest amd64 generation is {newest}, the requirements ask for {floor} or later)"
                )
    return out


# --------------------------------------------------------------------------
# Declarations and references: what `terraform validate` cannot check before
# `terraform init` (it stops at the first provider or module it would have to
# download, before it resolves a single reference).


def code_only(text: str) -> str:
    """The HCL source with comments and the literal parts of strings and
    heredocs blanked out (newlines kept, so line numbers hold); template
    interpolations (${...}, %{...}) stay, since they are expressions."""
    out = list(text)
    n = len(text)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    def code(i: int, in_template: bool) -> int:
        depth = 0
        while i < n:
            c = text[i]
            if c == "#" or text.startswith("//", i):
                j = text.find("\n", i)
                j = n if j < 0 else j
                blank(i, j)
                i = j
            elif text.startswith("/*", i):
                j = text.find("*/", i + 2)
                j = n if j < 0 else j + 2
                blank(i, j)
                i = j
            elif c == '"':
                i = template(i + 1, '"')
            elif text.startswith("<<", i) and (
                m := re.match(r"<<(-?)([A-Za-z_][\w-]*)[ \t]*\r?\n", text[i:])
            ):
                body = i + m.end()
                end = re.compile(rf"^[ \t]*{re.escape(m.group(2))}[ \t]*$", re.M).search(text, body)
                stop = end.start() if end else n
                template(body, None, stop)
                i = end.end() if end else n
            elif c == "{":
                depth += 1
                i += 1
            elif c == "}":
                if depth == 0 and in_template:
                    return i + 1
                depth -= 1
                i += 1
            else:
                i += 1
        return i

    def template(i: int, quote: str | None, stop: int | None = None) -> int:
        stop = n if stop is None else stop
        while i < stop:
            c = text[i]
            if quote and c == "\\":
                blank(i, i + 2)
                i += 2
            elif quote and c == quote:
                return i + 1
            elif text.startswith("$${", i) or text.startswith("%%{", i):
                blank(i, i + 3)
                i += 3
            elif text.startswith("${", i) or text.startswith("%{", i):
                blank(i, i + 2)
                i = code(i + 2, True)
            elif quote and c == "\n":
                return i
            else:
                blank(i, i + 1)
                i += 1
        return i

    code(0, False)
    return "".join(out)


def drop_moved_from(code: str) -> str:
    """`from` of moved and removed blocks names addresses that no longer exist."""
    out = code
    for m in re.finditer(r"\b(moved|removed)\s*\{", code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        block = code[m.end() : i]
        cleaned = re.sub(r"(?m)^([ \t]*)from[ \t]*=.*$", lambda x: " " * len(x.group(0)), block)
        out = out[: m.end()] + cleaned + out[i:]
    return out


NAME = r"[A-Za-z_][\w-]*"
NOT_AFTER = r"(?<![\w.\-])"


@dataclass
class Reference:
    kind: str  # var, local, module, data, resource
    address: str
    file: str
    line: int


def references(root: Root) -> list[Reference]:
    prefixes = sorted(set(root.required_providers) | {"terraform"})
    resource_re = re.compile(rf"{NOT_AFTER}((?:{'|'.join(map(re.escape, prefixes))})_[\w-]+)\.({NAME})")
    patterns = [
        ("var", re.compile(rf"{NOT_AFTER}var\.({NAME})")),
        ("local", re.compile(rf"{NOT_AFTER}local\.({NAME})")),
        ("module", re.compile(rf"{NOT_AFTER}module\.({NAME})")),
        ("data", re.compile(rf"{NOT_AFTER}data\.({NAME})\.({NAME})")),
        ("resource", resource_re),
    ]
    found = []
    for fname, text in sorted(root.texts.items()):
        code = drop_moved_from(code_only(text))
        for kind, pattern in patterns:
            for m in pattern.finditer(code):
                line = code.count("\n", 0, m.start()) + 1
                found.append(Reference(kind, ".".join(m.groups()), fname, line))
    return found


def declarations(root: Root) -> dict[str, list[str]]:
    """Every address the root declares, with where: `kind.address` -> [file:line, ...]."""
    decl: dict[str, list[str]] = {}

    def add(key: str, fname: str, line: int, *labels: str) -> None:
        if not line and labels:
            # python-hcl2 does not give every block its line: find it.
            kind = key.split(".")[0]
            pattern = rf"^{kind}\s+" + r"\s+".join(f'"{re.escape(label)}"' for label in labels) + r"\s*\{"
            m = re.search(pattern, root.texts[fname], re.M)
            line = root.texts[fname].count("\n", 0, m.start()) + 1 if m else 0
        decl.setdefault(key, []).append(f"{fname}:{line}")

    for kind in ("resource", "data"):
        for rtype, rname, body, fname in root.resources(kind):
            add(f"{kind}.{rtype}.{rname}", fname, body.get("__start_line__", 0), rtype, rname)
    for kind in ("module", "variable", "output"):
        for fname, item in root.each(kind):
            for name, body in item.items():
                add(f"{kind}.{name}", fname, body.get("__start_line__", 0), name)
    for fname, item in root.each("locals"):
        for name, values in item.items():
            if name.startswith("__"):
                continue
            # python-hcl2 lists every value an attribute was given in the block.
            for _ in values if isinstance(values, list) else [values]:
                add(f"local.{name}", fname, item.get("__start_line__", 0))
    return decl


def lowest_version(constraint: str) -> tuple[int, ...] | None:
    """The oldest version a required_version constraint admits (None: no lower bound)."""
    lows = []
    for part in constraint.split(","):
        m = re.fullmatch(r"\s*(>=|>|=|~>|!=|<=|<)?\s*v?(\d+(?:\.\d+)*)\s*", part)
        if not m:
            return None
        op, version = m.group(1) or "=", tuple(int(x) for x in m.group(2).split("."))
        if op in (">=", "=", "~>"):
            lows.append(version)
        elif op == ">":
            lows.append(version + (1,))
    return max(lows) if lows else None


def check_refs(path: Path) -> list[str]:
    root = load_root(path)
    if root.errors:
        return root.errors
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    failures = []
    decl = declarations(root)
    for key, where in sorted(decl.items()):
        if len(where) > 1:
            failures.append(
                f"{rel}: {key.removeprefix('resource.')} is declared {len(where)} times ({', '.join(where)})"
            )
    for ref in references(root):
        where = f"{rel}/{ref.file}:{ref.line}"
        if ref.kind == "var" and f"variable.{ref.address}" not in decl:
            failures.append(f'{where}: var.{ref.address} is not declared (no variable "{ref.address}")')
        elif ref.kind == "local" and f"local.{ref.address}" not in decl:
            failures.append(f"{where}: local.{ref.address} is not declared in any locals block")
        elif ref.kind == "module" and f"module.{ref.address}" not in decl:
            failures.append(f'{where}: module.{ref.address} is not declared (no module "{ref.address}")')
        elif ref.kind == "data" and f"data.{ref.address}" not in decl:
            failures.append(f"{where}: data.{ref.address} is not declared")
        elif ref.kind == "resource" and f"resource.{ref.address}" not in decl:
            failures.append(f"{where}: {ref.address} is not declared (no resource of that type and name)")
    versions = [first(tb, "required_version") for tb in root.terraform_blocks if "required_version" in tb]
    if not versions:
        failures.append(f"{rel}: no terraform {{ required_version }}")
    for constraint in versions:
        low = lowest_version(constraint or "")
        if low is None or low < TERRAFORM_OLDEST:
            failures.append(
                f"{rel}: required_version {constraint!r} admits Terraform older than "
                f"{'.'.join(map(str, TERRAFORM_OLDEST))} (S3 lock files, use_lockfile, are experimental before it)"
            )
    return sorted(set(failures), key=failures.index)


def cmd_refs(roots: list[Path]) -> int:
    failures = []
    for path in roots:
        found = check_refs(path)
        root = load_root(path)
        refs = references(root) if not root.errors else []
        print(
            f"{path.name}: {len(declarations(root)) if not root.errors else 0} declarations, "
            f"{len(refs)} references, {len(found)} problems"
        )
        failures.extend(found)
    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


def cmd_refs_fixtures(dirs: list[Path]) -> int:
    """Each fixture must fail `refs`, with every line of its EXPECT file among
    the messages: the check is shown to catch that mistake."""
    bad = 0
    for path in dirs:
        expect = [
            line
            for line in (path / "EXPECT").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        found = check_refs(path)
        missing = [e for e in expect if not any(e in f for f in found)]
        print(f"{path.name}: refs reports {len(found)} problem(s):")
        for f in found:
            print(f"  {f}")
        if not found or missing:
            bad += 1
            for e in missing:
                print(f"  NOT REPORTED: {e}", file=sys.stderr)
            if not found:
                print(f"{path.name}: the check passed a root with a mistake in it", file=sys.stderr)
    return 1 if bad else 0


def cmd_review_fixtures(dirs: list[Path]) -> int:
    """Each fixture directory holds a root (named like the real one it stands
    for) with the review's mistakes in it, and EXPECT: the review rules of
    `invariants` must report every expected message."""
    bad = 0
    for path in dirs:
        expect = [
            line
            for line in (path / "EXPECT").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        found = []
        for root_dir in sorted(d for d in path.iterdir() if d.is_dir() and list(d.glob("*.tf"))):
            found += review_rules(load_root(root_dir), root_dir)
        missing = [e for e in expect if not any(e in f for f in found)]
        print(f"{path.name}: the review rules report {len(found)} problem(s):")
        for f in found:
            print(f"  {f}")
        for e in missing:
            print(f"  NOT REPORTED: {e}", file=sys.stderr)
        bad += bool(missing or not found)
    return 1 if bad else 0


# --------------------------------------------------------------------------
# terraform validate before init

# Errors `terraform validate` reports because something has to be downloaded
# first; everything else is a mistake in the configuration.
DOWNLOAD_ERRORS = {
    "Missing required provider",
    "Module not installed",
}


def cmd_validate(roots: list[Path], expect_fail: bool = False) -> int:
    terraform = shutil.which("terraform")
    if not terraform:
        print(
            "terraform is not on PATH: install Terraform >= 1.11 (the checks do not skip it)", file=sys.stderr
        )
        return 2
    version = subprocess.run(
        [terraform, "version", "-json"], capture_output=True, text=True, env=terraform_env()
    ).stdout
    print(f"terraform {json.loads(version or '{}').get('terraform_version', '?')} ({terraform})")
    failed = 0
    for path in roots:
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        run = subprocess.run(
            [terraform, "validate", "-json", "-no-color"],
            cwd=path,
            capture_output=True,
            text=True,
            env=terraform_env(),
        )
        try:
            result = json.loads(run.stdout)
        except json.JSONDecodeError:
            print(
                f"{rel}: terraform validate printed no JSON (exit {run.returncode}): {run.stderr.strip()[:500]}"
            )
            failed += 1
            continue
        diags = result.get("diagnostics", [])
        wrong = [d for d in diags if d.get("severity") == "error" and d.get("summary") not in DOWNLOAD_ERRORS]
        if result.get("valid"):
            summary = "valid"
        elif wrong:
            summary = f"{len(wrong)} error(s) that no download explains"
        else:
            summary = "valid up to the download step"
        print(f"{rel}: {summary}")
        for d in diags:
            rng = d.get("range") or {}
            at = f" ({rng.get('filename')}:{rng.get('start', {}).get('line')})" if rng else ""
            if d in wrong:
                tag = "ERROR"
            elif d.get("severity") == "error":
                tag = "needs init, allowed"
            else:
                tag = d.get("severity", "?")
            print(f"  [{tag}] {d.get('summary')}{at}")
            if d in wrong and d.get("detail"):
                print(f"      {d['detail'].splitlines()[0]}")
        if wrong or (run.returncode != 0 and not diags):
            failed += 1
    if expect_fail:
        if failed == len(roots):
            print("every root given was refused, as expected")
            return 0
        print("a root with a mistake in it passed terraform validate", file=sys.stderr)
        return 1
    return 1 if failed else 0


def mirror_providers(mirror: Path) -> dict[str, list[str]]:
    """Providers of a filesystem mirror (unpacked layout) for this platform:
    source address -> versions."""
    found: dict[str, list[str]] = {}
    for platform_dir in sorted(mirror.glob("*/*/*/*/linux_amd64")):
        host, namespace, name, version = platform_dir.parts[-5:-1]
        found.setdefault(f"{host}/{namespace}/{name}", []).append(version)
    return found


def cmd_validate_mirror(roots: list[Path], mirror: Path) -> int:
    """Full `terraform validate` (provider schemas loaded) of every root whose
    providers a filesystem mirror on this machine holds and that calls no
    registry module. The mirror's version need not match the roots' pin: the
    copy of the root gets an override file naming the mirror's version, and
    what this proves is that the root is valid against that version's schema
    (argument names, block structure, attribute references, types)."""
    import tempfile

    terraform = shutil.which("terraform")
    if not terraform:
        print("terraform is not on PATH", file=sys.stderr)
        return 2
    have = mirror_providers(mirror)
    listing = ", ".join(f"{k} {' '.join(v)}" for k, v in have.items()) or "no providers"
    print(f"filesystem mirror {mirror}: {listing}")
    failed = checked = 0
    with tempfile.TemporaryDirectory(prefix="tf-mirror-") as tmp:
        cli = Path(tmp) / "cli.tfrc"
        cache = Path(tmp) / "plugin-cache"
        cache.mkdir()
        cli.write_text(
            f'plugin_cache_dir = "{cache}"\n'
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n'
            "}\n"
        )
        env = terraform_env()
        env["TF_CLI_CONFIG_FILE"] = str(cli)
        for path in roots:
            root = load_root(path)
            rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            wanted = {
                name: spec.get("source", f"hashicorp/{name}")
                for name, spec in root.required_providers.items()
            }
            sources = {
                name: src if src.count("/") == 2 else f"registry.terraform.io/{src}"
                for name, src in wanted.items()
            }
            missing = [src for src in sources.values() if src not in have]
            if root.modules or missing:
                why = []
                if root.modules:
                    why.append(f"registry modules {', '.join(m[0] for m in root.modules)}")
                if missing:
                    why.append(f"providers {', '.join(missing)}")
                print(f"{rel}: not checked, the mirror lacks {' and '.join(why)}")
                continue
            checked += 1
            copy = Path(tmp) / path.name
            shutil.copytree(
                path, copy, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*")
            )
            pins = "\n".join(
                f'    {name} = {{\n      source  = "{wanted[name]}"\n      version = "{max(have[src], key=version_key)}"\n    }}'
                for name, src in sources.items()
            )
            (copy / "zz_mirror_override.tf").write_text(
                f"terraform {{\n  required_providers {{\n{pins}\n  }}\n}}\n"
            )
            init = subprocess.run(
                [terraform, "init", "-backend=false", "-input=false", "-no-color"],
                cwd=copy,
                capture_output=True,
                text=True,
                env=env,
            )
            if init.returncode != 0:
                failed += 1
                print(
                    f"{rel}: terraform init from the mirror failed:\n{init.stdout[-1500:]}{init.stderr[-1500:]}"
                )
                continue
            run = subprocess.run(
                [terraform, "validate", "-json", "-no-color"],
                cwd=copy,
                capture_output=True,
                text=True,
                env=env,
            )
            result = json.loads(run.stdout or "{}")
            versions = ", ".join(f"{src} {max(have[src], key=version_key)}" for src in sources.values())
            print(
                f"{rel}: {'valid' if result.get('valid') else 'INVALID'} against {versions} (the root pins "
                f"{', '.join(str(root.required_providers[n].get('version')) for n in sources)})"
            )
            for d in result.get("diagnostics", []):
                rng = d.get("range") or {}
                at = f" ({rng.get('filename')}:{rng.get('start', {}).get('line')})" if rng else ""
                print(f"  [{d.get('severity')}] {d.get('summary')}{at}")
                if d.get("severity") == "error" and d.get("detail"):
                    print(f"      {d['detail'].splitlines()[0]}")
            if not result.get("valid"):
                failed += 1
    if not checked:
        print("no root could be checked against the mirror", file=sys.stderr)
        return 1
    return 1 if failed else 0


def version_key(version: str) -> tuple:
    return tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", version))


def terraform_env() -> dict:
    """No CLI configuration of the machine (credentials, mirrors), no prompts."""
    import os

    env = dict(os.environ)
    env.update(
        {
            "TF_CLI_CONFIG_FILE": "/dev/null",
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
    )
    return env


def _mutations() -> list[tuple[str, str, object]]:
    """(what, expected message, change) for the manifests self-test: each
    change of a good rendering must be refused with that message."""

    def kind(docs, k, name=None):
        return next(d for d in docs if d["kind"] == k and (name is None or d["metadata"]["name"] == name))

    def container(docs):
        return kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]

    def set_env(docs, key, value):
        kind(docs, "ConfigMap")["data"][key] = value

    return [
        (
            "metrics on the API port",
            "uses the API port",
            lambda d: set_env(d, "FLIGHT_COUNTER_METRICS_BIND", "0.0.0.0:8080"),
        ),
        (
            "no metrics listener",
            "FLIGHT_COUNTER_METRICS_BIND must be set",
            lambda d: kind(d, "ConfigMap")["data"].pop("FLIGHT_COUNTER_METRICS_BIND"),
        ),
        (
            "no metrics container port",
            "container ports must be exactly",
            lambda d: container(d)["ports"].pop(),
        ),
        (
            "annotations scrape the API port",
            "scrape annotations must name the metrics port",
            lambda d: kind(d, "Deployment")["spec"]["template"]["metadata"]["annotations"].update(
                {"prometheus.io/port": "8080"}
            ),
        ),
        (
            "load balancer targets metrics",
            "exposes the metrics port",
            lambda d: kind(d, "Service")["spec"]["ports"].append(
                {"name": "m", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
            ),
        ),
        (
            "subnets admitted on every port",
            "on every port",
            lambda d: kind(d, "NetworkPolicy", "flight-counter")["spec"]["ingress"][0].pop("ports"),
        ),
        (
            "metrics port opened to the subnets",
            "on the metrics port",
            lambda d: kind(d, "NetworkPolicy", "flight-counter")["spec"]["ingress"][0]["ports"].append(
                {"protocol": "TCP", "port": "metrics"}
            ),
        ),
        (
            "monitoring rule widened to an address block",
            "only the monitoring namespace may reach it",
            lambda d: kind(d, "NetworkPolicy", "flight-counter-monitoring")["spec"]["ingress"][0][
                "from"
            ].append({"ipBlock": {"cidr": "10.40.0.0/16"}}),
        ),
        (
            "the whole VPC on the API port",
            "must be exactly the subnets",
            lambda d: kind(d, "NetworkPolicy", "flight-counter")["spec"]["ingress"][0].update(
                {"from": [{"ipBlock": {"cidr": "10.40.0.0/16"}}]}
            ),
        ),
        (
            "a kind the deploy role may not apply",
            "deployer Role: Secret",
            lambda d: d.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "x", "namespace": kind(d, "ConfigMap")["metadata"]["namespace"]},
                }
            ),
        ),
    ]


def cmd_manifests_selftest(rendered: Path, k8s_version: str, overlay: str) -> int:
    import copy
    import io
    import tempfile
    from contextlib import redirect_stderr

    good = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for what, expected, change in _mutations():
            docs = copy.deepcopy(good)
            change(docs)
            path = Path(tmp) / "mutated.yaml"
            path.write_text(yaml.safe_dump_all(docs))
            err = io.StringIO()
            with redirect_stderr(err):
                code = cmd_manifests(path, k8s_version, overlay)
            hit = [line for line in err.getvalue().splitlines() if expected in line]
            status = "refused" if code and hit else "NOT REFUSED"
            bad += status != "refused"
            print(f"{status}: {what}: {hit[0] if hit else err.getvalue().strip() or 'no message'}")
    return 1 if bad else 0


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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    docs = sub.add_parser("docs")
    docs.add_argument("--check", action="store_true")
    docs.add_argument("roots", nargs="+", type=Path)
    for name in ("readme", "invariants", "refs", "refs-fixtures", "review-fixtures"):
        p = sub.add_parser(name)
        p.add_argument("roots", nargs="+", type=Path)
    val = sub.add_parser("validate")
    val.add_argument("--expect-fail", action="store_true", help="pass only if every root is refused")
    val.add_argument("roots", nargs="+", type=Path)
    mir = sub.add_parser("validate-mirror")
    mir.add_argument("--mirror", type=Path, required=True)
    mir.add_argument("roots", nargs="+", type=Path)
    sub.add_parser("docs-selftest")
    man = sub.add_parser("manifests")
    man.add_argument("rendered", type=Path)
    man.add_argument("--kubernetes-version", required=True)
    man.add_argument("--overlay", choices=["default", "public"], default="default")
    man.add_argument(
        "--selftest", action="store_true", help="refuse each known mistake put into the rendering"
    )
    args = parser.parse_args()
    if args.cmd == "docs-selftest":
        return cmd_docs_selftest()
    if args.cmd == "manifests":
        if args.selftest:
            return cmd_manifests_selftest(args.rendered, args.kubernetes_version, args.overlay)
        return cmd_manifests(args.rendered, args.kubernetes_version, args.overlay)
    roots = [p.resolve() for p in args.roots]
    if args.cmd == "docs":
        return cmd_docs(roots, args.check)
    if args.cmd == "readme":
        return cmd_readme(roots)
    if args.cmd == "refs":
        return cmd_refs(roots)
    if args.cmd == "refs-fixtures":
        return cmd_refs_fixtures(roots)
    if args.cmd == "review-fixtures":
        return cmd_review_fixtures(roots)
    if args.cmd == "validate":
        return cmd_validate(roots, args.expect_fail)
    if args.cmd == "validate-mirror":
        return cmd_validate_mirror(roots, args.mirror)
    return cmd_invariants(roots)


if __name__ == "__main__":
    sys.exit(main())
