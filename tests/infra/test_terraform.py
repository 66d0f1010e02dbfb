"""infra/terraform checked statically: checkov (0 failed; every skip in the allow-list with its reason),
terraform fmt, the generated monitoring.tf, and cross-references read with python-hcl2.

checkov lives in its own virtualenv (``make tools``: it pins boto3, packaging and networkx to versions the
project cannot use). Without it these tests skip by name, unless SRL_RLVR_REQUIRE_TOOLS=1 (set by
``make test``), where a missing tool is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from terraform_model import TERRAFORM, blocks, load, load_all, policy_document, references, unwrap

ROOT = TERRAFORM.parents[1]
S3_CHECKS = ("CKV_AWS_18", "CKV_AWS_19", "CKV_AWS_21", "CKV_AWS_145", "CKV2_AWS_6", "CKV2_AWS_61", "CKV2_AWS_62",
             "CKV2_AWS_65")
IAM_CHECKS = ("CKV_AWS_109", "CKV_AWS_111", "CKV_AWS_356")  # CKV_AWS_355 reads inline JSON only (iam.tf)
DATA_BUCKETS = ("training_data", "checkpoints", "outputs")


def _tool(name: str, venv_bin: Path | None = None) -> str:
    found = str(venv_bin / name) if venv_bin and (venv_bin / name).exists() else shutil.which(name)
    if found:
        return found
    if os.environ.get("SRL_RLVR_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{name} is not installed (make tools)")
    pytest.skip(f"{name} is not installed here (make tools installs checkov; terraform is optional)")


@pytest.fixture(scope="module")
def checkov_results() -> dict:
    checkov = _tool("checkov", ROOT / ".venv-checkov" / "bin")
    p = subprocess.run([checkov, "-d", str(TERRAFORM), "--framework", "terraform", "--skip-download", "-o", "json"],
                       capture_output=True, text=True, timeout=600)
    assert p.stdout.strip(), p.stderr[-2000:]
    return json.loads(p.stdout)["results"]


def test_checkov_reports_no_failed_check(checkov_results):
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in checkov_results["failed_checks"]]
    assert failed == []


def test_every_skip_is_in_the_allow_list_with_its_reason(checkov_results):
    allow = yaml.safe_load((TERRAFORM / "checkov-allowlist.yaml").read_text(encoding="utf-8"))
    assert all(entry["reason"].strip() for entry in allow)
    listed = {(e["check"], e["resource"], e["reason"]) for e in allow}
    skipped = {(c["check_id"], re.sub(r"\[.*\]$", "", c["resource"]), c["check_result"]["suppress_comment"])
               for c in checkov_results["skipped_checks"]}
    assert skipped == listed


def test_the_issue_checks_ran_and_passed_on_every_bucket_and_policy(checkov_results):
    passed = {(c["check_id"], c["resource"]) for c in checkov_results["passed_checks"]}
    for key in DATA_BUCKETS:
        for check in S3_CHECKS:
            on = "aws_s3_bucket_ownership_controls" if check == "CKV2_AWS_65" else "aws_s3_bucket"  # where it runs
            assert (check, f'{on}.data["{key}"]') in passed, (check, key)
    for name in ("training", "serving", "ci"):
        for check in IAM_CHECKS:
            assert (check, f"data.aws_iam_policy_document.{name}") in passed or \
                (check, f"aws_iam_policy_document.{name}") in passed, (check, name)


def test_terraform_fmt():
    terraform = _tool("terraform")
    p = subprocess.run([terraform, "fmt", "-check", "-recursive", str(TERRAFORM)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_monitoring_tf_is_generated_from_the_catalog():
    from srl_rlvr.monitoring.terraform import render

    assert (TERRAFORM / "monitoring.tf").read_text(encoding="utf-8") == render(), \
        "regenerate: srl-rlvr monitor generate --out infra/monitoring --terraform infra/terraform"


def test_every_alarm_names_a_catalog_metric():
    from srl_rlvr.monitoring.cloudwatch import catalog_entry

    alarms = blocks(load("monitoring.tf"), "resource")
    names = []
    for (rtype, _), body in alarms.items():
        if rtype != "aws_cloudwatch_metric_alarm":
            continue
        names += [unwrap(body["metric_name"])] if "metric_name" in body else []
        for query in body.get("metric_query", []):
            for metric in query.get("metric", []):
                names.append(unwrap(metric["metric_name"]))
    assert len(names) >= 8
    for name in names:
        catalog_entry(name)  # raises for a name the catalog does not define


def test_every_reference_names_something_defined():
    parsed = load_all()
    defined = set()
    for content in parsed.values():
        for kind in ("resource", "data"):
            for rtype, name in blocks(content, kind):
                defined.add(f"{rtype}.{name}")
    text = "\n".join(p.read_text(encoding="utf-8") for p in TERRAFORM.glob("*.tf"))
    used = set(re.findall(r"(?<![\w.\"])(aws_[a-z0-9_]+\.[a-z0-9_]+)", text))
    used = {u for u in used if not u.startswith(("aws_s3_bucket_", "aws_iam_role_policy."))} | used
    missing = sorted(u for u in used if u not in defined and f"data.{u}" not in defined
                     and not any(d.endswith("." + u) for d in defined))
    assert missing == []
    keys = set(re.findall(r'aws_s3_bucket\.data\["([a-z_]+)"\]', text))
    assert keys == set(DATA_BUCKETS)  # every bucket a policy names is a defined data bucket, and all are named


def _statements(role: str) -> list[dict]:
    return policy_document(role, references("p-dev", "arn:aws:kms:us-east-1:123456789012:key/k"))["Statement"]


def test_star_resources_only_for_actions_without_resource_arns():
    allowed = {"cloudwatch:PutMetricData", "sagemaker:ListModelPackageGroups"}
    for role in ("training", "serving", "ci"):
        for st in _statements(role):
            if "*" in st["Resource"]:
                assert set(st["Action"]) <= allowed, (role, st)
                if "cloudwatch:PutMetricData" in st["Action"]:
                    assert st["Condition"]["StringEquals"]["cloudwatch:namespace"] == ["SrlRlvr"]


def _sagemaker_calls() -> set[str]:
    source = (ROOT / "src" / "srl_rlvr" / "registry" / "sagemaker.py").read_text(encoding="utf-8")
    calls = set(re.findall(r'(?:_call|_pages)\(\s*"([a-z_]+)"', source))
    calls |= set(re.findall(r"self\.client\.([a-z_]+)\(", source)) - {"get_paginator"}
    return {"sagemaker:" + "".join(part.title() for part in c.split("_")) for c in calls}


def test_the_registry_calls_srl_rlvr_makes_are_allowed_to_training_and_reads_to_serving():
    calls = _sagemaker_calls()
    assert {"sagemaker:CreateModelPackage", "sagemaker:ListModelPackageGroups"} <= calls
    training = {a for st in _statements("training") for a in st["Action"] if a.startswith("sagemaker:")}
    serving = {a for st in _statements("serving") for a in st["Action"] if a.startswith("sagemaker:")}
    assert calls <= training
    assert serving and all(a.split(":")[1].startswith(("Describe", "List")) for a in serving)
    for role in ("training", "serving"):
        for st in _statements(role):
            for arn in st["Resource"]:
                if ":sagemaker:" in arn:
                    assert re.search(r":model-package(-group)?/p-dev-\*", arn), arn  # only the registry's prefix
