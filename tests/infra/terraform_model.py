"""infra/terraform read with python-hcl2, and its IAM policy documents rendered with real ARNs.

Rendering evaluates only what the documents use: references to resources, locals and variables (each
given a value here or read from variables.tf defaults), quoted templates, and the one list comprehension
over the data buckets. Anything else raises, so a new kind of expression in iam.tf fails the IAM test
instead of being rendered wrong.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2

TERRAFORM = Path(__file__).resolve().parents[2] / "infra" / "terraform"
ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"


def load(name: str) -> dict[str, Any]:
    with (TERRAFORM / name).open(encoding="utf-8") as f:
        return hcl2.load(f)


def load_all() -> dict[str, dict[str, Any]]:
    return {path.name: load(path.name) for path in sorted(TERRAFORM.glob("*.tf"))}


def label(text: str) -> str:
    """A block label or string literal as python-hcl2 8 gives it (``'"name"'``), without its quotes."""
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def unwrap(value: Any) -> Any:
    """An attribute's value: python-hcl2 8 keeps a string literal's quotes (``'"Allow"'``); take them off.
    (Older python-hcl2 wrapped values in one-element lists; those are taken out too.)"""
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], (list, str, int, float, bool)):
        value = value[0]
    return label(value) if isinstance(value, str) else value


def blocks(parsed: dict[str, Any], kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(type, name): body} of every ``resource`` or ``data`` block (labels without quotes)."""
    out = {}
    for block in parsed.get(kind, []):
        for rtype, named in block.items():
            for name, body in named.items():
                out[(label(rtype), label(name))] = body
    return out


def variable_defaults() -> dict[str, Any]:
    out = {}
    for block in load("variables.tf")["variable"]:
        for name, body in block.items():
            out[label(name)] = unwrap(body.get("default"))
    return out


def bucket_names(prefix: str) -> dict[str, str]:
    return {"training_data": f"{prefix}-training-data", "checkpoints": f"{prefix}-checkpoints",
            "outputs": f"{prefix}-outputs", "access_logs": f"{prefix}-access-logs"}


def references(prefix: str, kms_key_arn: str) -> dict[str, Any]:
    """What each referenced name evaluates to once applied (account 123456789012, us-east-1)."""
    defaults = variable_defaults()
    names = bucket_names(prefix)
    group = f"{prefix}-models"
    refs: dict[str, Any] = {
        "local.prefix": prefix, "local.partition": PARTITION, "local.account_id": ACCOUNT, "var.region": REGION,
        "var.metrics_namespace": defaults["metrics_namespace"],
        "aws_kms_key.data.arn": kms_key_arn,
        "aws_s3_bucket.access_logs.arn": f"arn:aws:s3:::{names['access_logs']}",
        "aws_sagemaker_model_package_group.registry.model_package_group_name": group,
        "aws_sagemaker_model_package_group.registry.arn":
            f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{group}",
        "[for b in aws_s3_bucket.data : b.arn]":
            [f"arn:aws:s3:::{names[k]}" for k in ("training_data", "checkpoints", "outputs")],
    }
    for key in ("training_data", "checkpoints", "outputs"):
        refs[f'aws_s3_bucket.data["{key}"].arn'] = f"arn:aws:s3:::{names[key]}"
    for block in load("iam.tf")["locals"]:
        for key in ("registry_groups_arn", "registry_packages_arn"):
            if key in block:
                refs[f"local.{key}"] = render(block[key], refs)
    return refs


def _interpolations(text: str) -> list[tuple[int, int]]:
    """(start, end) of each top-level ``${...}`` in ``text`` (end is past the closing brace)."""
    spans, i = [], 0
    while (start := text.find("${", i)) >= 0:
        depth, j = 0, start + 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        spans.append((start, j + 1))
        i = j + 1
    return spans


def evaluate(expr: str, refs: dict[str, Any]) -> Any:
    expr = expr.strip()
    if len(expr) >= 2 and expr[0] == expr[-1] == '"':
        return render(expr[1:-1], refs)
    if expr in refs:
        return refs[expr]
    raise KeyError(f"iam.tf uses an expression the renderer does not know: {expr!r}")


def render(text: Any, refs: dict[str, Any]) -> Any:
    """A template string with its ``${...}`` evaluated; a string that is one whole ``${expr}`` keeps expr's type.
    A quoted value (python-hcl2 8's string literal, ``'"a-${x}"'``) is the template inside the quotes."""
    if not isinstance(text, str):
        return text
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    spans = _interpolations(text)
    if len(spans) == 1 and spans[0] == (0, len(text)):
        return evaluate(text[2:-1], refs)
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        value = evaluate(text[start + 2:end - 1], refs)
        if not isinstance(value, str):
            raise TypeError(f"{text!r}: {value!r} inside a template")
        out.append(value)
        last = end
    out.append(text[last:])
    return "".join(out)


def _flat(values: Any, refs: dict[str, Any]) -> list[str]:
    values = values if isinstance(values, list) else [values]
    out: list[str] = []
    for v in values:
        if isinstance(v, list):
            out += _flat(v, refs)
            continue
        rendered = render(v, refs)
        out += rendered if isinstance(rendered, list) else [rendered]
    return out


def policy_document(name: str, refs: dict[str, Any]) -> dict[str, Any]:
    """``data.aws_iam_policy_document.<name>`` as the JSON policy AWS would get."""
    body = blocks(load("iam.tf"), "data")[("aws_iam_policy_document", name)]
    statements = []
    for st in body["statement"]:
        out: dict[str, Any] = {"Effect": unwrap(st.get("effect", '"Allow"')),
                               "Action": _flat(st["actions"], refs), "Resource": _flat(st["resources"], refs)}
        if "sid" in st:
            out["Sid"] = unwrap(st["sid"])
        for cond in st.get("condition", []):
            test, variable = unwrap(cond["test"]), unwrap(cond["variable"])
            out.setdefault("Condition", {}).setdefault(test, {})[variable] = _flat(cond["values"], refs)
        statements.append(out)
    return {"Version": "2012-10-17", "Statement": statements}


def interpolated_names(text: str) -> set[str]:
    """Every ``aws_x.y`` resource address an expression string mentions."""
    return set(re.findall(r"\b(aws_[a-z0-9_]+\.[a-z0-9_]+)\b", text))


__all__ = ["ACCOUNT", "REGION", "TERRAFORM", "blocks", "bucket_names", "interpolated_names", "load", "load_all",
           "policy_document", "references", "render", "unwrap", "variable_defaults"]
