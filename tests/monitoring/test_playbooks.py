"""The alert playbooks, docs/playbooks/<AlertName>.md: one per alert of srl_rlvr.monitoring.rules (the deployed
ALERTS and the end-to-end test's ServingLatencyP95High from fast_alert), each reachable from its runbook_url, with
the alert's exact expression, PromQL that promtool accepts and that names only catalog series, and `srl-rlvr`
command lines that exist in the CLI with options their command accepts. Sub-folders (docs/playbooks/failures/)
hold other pages and are not alert playbooks."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from srl_rlvr.cli.main import cli
from srl_rlvr.monitoring.catalog import METRICS, referenced
from srl_rlvr.monitoring.rules import ALERTS, RUNBOOK_BASE, Alert, fast_alert

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "docs" / "playbooks"
SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation", "Verification", "Rollback")
# tests/monitoring/test_monitoring_e2e.py loads fast_rules(latency_threshold_s=0.001) (for: 0s): the expression
# its playbook quotes.
FAST_THRESHOLD_S = 0.001
RULE_ALERTS: list[Alert] = [*ALERTS, fast_alert(FAST_THRESHOLD_S)]
# The series names Prometheus stores: counters with _total, histograms with _bucket/_sum/_count, gauges as named.
SERIES = {sample for m in METRICS for sample in m.samples}
HELP = ("-h", "--help")
SEPARATORS = {"|", "||", "&", "&&", ";", "(", ")", "<", ">", ">>", "<<", "2>", "&>"}
_FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_TEMPLATE_LABEL = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def _binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


PROMTOOL = _binary("promtool")


def playbook_files() -> list[Path]:
    """The alert playbooks: the .md files directly in docs/playbooks/ (not in its sub-folders)."""
    return sorted(path for path in PLAYBOOKS.glob("*.md") if path.is_file())


def fenced(text: str, lang: str) -> list[str]:
    """The bodies of the ```lang fenced blocks of a Markdown text."""
    return [body for tag, body in _FENCE.findall(text) if tag == lang]


def sections(text: str) -> dict[str, str]:
    """Second-level heading -> its text (up to the next one), ignoring '## ' lines inside fenced blocks."""
    found: dict[str, list[str]] = {}
    current, in_fence = None, False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("## "):
            current = line[3:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def promql_queries() -> list[tuple[str, str]]:
    """(playbook name, query) for every ```promql block of every playbook."""
    return [(path.stem, body.strip()) for path in playbook_files()
            for body in fenced(path.read_text(encoding="utf-8"), "promql")]


def shell_invocations(block: str) -> list[list[str]]:
    """The token lists of the `srl-rlvr ...` commands in a shell block: lines joined at trailing backslashes,
    comments dropped, split at pipes, `&&`, `;` and parentheses; leading VAR=value assignments skipped."""
    invocations = []
    for line in re.sub(r"\\\n", " ", block).splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        segment: list[str] = []
        for token in [*lexer, ";"]:
            if token not in SEPARATORS:
                segment.append(token)
                continue
            while segment and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", segment[0]):
                segment.pop(0)
            if segment and segment[0] == "srl-rlvr":
                invocations.append(segment)
            segment = []
    return invocations


def check_invocation(tokens: list[str]) -> list[str]:
    """What is wrong with one `srl-rlvr ...` command line, against the click command tree of srl_rlvr.cli.main:
    an unknown command, a group without a command, an option the command lacks, a required option missing, or
    the wrong number of positional arguments. Empty when it is fine."""
    assert tokens[0] == "srl-rlvr"
    command: click.Command = cli
    path = ["srl-rlvr"]
    rest = tokens[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            return [f"`{' '.join(path)}` has no command {rest[0]!r} (it has {', '.join(sorted(command.commands))})"]
        command, path, rest = sub, [*path, rest[0]], rest[1:]
    where = f"`{' '.join(path)}`"
    asks_help = any(token in HELP for token in rest)
    if isinstance(command, click.Group) and not asks_help:
        return [f"{where} is a group: name one of its commands ({', '.join(sorted(command.commands))})"]
    options = {opt: param for param in command.params if isinstance(param, click.Option)
               for opt in (*param.opts, *param.secondary_opts)}
    problems, given, positional = [], set(), []
    index = 0
    while index < len(rest):
        token = rest[index]
        if token in HELP:
            pass
        elif token.startswith("-") and token != "-":
            name, has_value, _ = token.partition("=")
            param = options.get(name)
            if param is None:
                problems.append(f"{where} has no option {name} (it has {', '.join(sorted(options)) or 'none'})")
            else:
                given.add(param.name)
                if not (param.is_flag or param.count or has_value):
                    index += 1  # the option's value
        else:
            positional.append(token)
        index += 1
    if asks_help:
        return problems
    for param in options.values():
        if param.required and param.name not in given:
            problems.append(f"{where} needs {'/'.join(param.opts)}")
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    needed = sum(p.nargs for p in arguments if p.required and p.nargs > 0)
    most = None if any(p.nargs < 0 for p in arguments) else sum(p.nargs for p in arguments)
    if len(positional) < needed or (most is not None and len(positional) > most):
        names = " ".join(p.human_readable_name for p in arguments) or "no arguments"
        problems.append(f"{where} takes {names}, got {positional}")
    return problems


# --- which playbooks -----------------------------------------------------------------------------------------
def test_one_playbook_per_alert_of_rules_py():
    names = [alert.name for alert in RULE_ALERTS]
    files = [path.stem for path in playbook_files()]
    assert len(set(names)) == len(names)
    assert len(files) == len(names), (
        f"{len(names)} alerts in srl_rlvr/monitoring/rules.py, {len(files)} playbooks in {PLAYBOOKS}; "
        f"alerts without a playbook: {sorted(set(names) - set(files))}, "
        f"playbooks of no alert: {sorted(set(files) - set(names))}")
    assert set(files) == set(names)


def test_every_runbook_url_resolves_to_a_playbook_file():
    prefix = "https://github.com/srl-rlvr/srl-rlvr/blob/main/"
    assert RUNBOOK_BASE.startswith(prefix) and RUNBOOK_BASE.endswith("/")
    folder = ROOT / RUNBOOK_BASE[len(prefix):]
    assert folder.resolve() == PLAYBOOKS.resolve()
    for alert in RULE_ALERTS:
        assert alert.runbook_url.startswith(RUNBOOK_BASE), alert.name
        target = folder / alert.runbook_url[len(RUNBOOK_BASE):]
        assert target.is_file(), f"{alert.name}: {alert.runbook_url} -> {target} does not exist"
        assert target.parent.resolve() == PLAYBOOKS.resolve(), alert.name


# --- each page -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alert", RULE_ALERTS, ids=lambda alert: alert.name)
def test_playbook_layout_and_the_alert_s_own_expression(alert):
    text = (PLAYBOOKS / f"{alert.name}.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == f"# {alert.name}"
    severity = [line for line in lines if line.startswith("Severity: ")]
    assert len(severity) == 1, alert.name
    if alert in ALERTS:  # the fast alert's summary carries the test's threshold; its page says "the threshold"
        summary = _TEMPLATE_LABEL.sub(r"<\1>", alert.summary)
        assert severity[0] == f"Severity: {alert.severity}. Alert: {summary}.", alert.name
    else:
        assert severity[0].startswith(f"Severity: {alert.severity}. "), alert.name
    assert "Status: stub" not in text and "## What it means" not in text and "## First checks" not in text
    found = sections(text)
    assert tuple(found) == SECTIONS, alert.name
    for name, body in found.items():
        assert body.strip(), f"{alert.name}: section {name} is empty"
    meaning = found["Meaning"]
    assert alert.expr in [q.strip() for q in fenced(meaning, "promql")], (
        f"{alert.name}: Meaning must quote the alert's expression from rules.py in a ```promql block:\n{alert.expr}")
    assert f"`for: {alert.for_}`" in meaning, alert.name
    assert fenced(found["Diagnosis"], "promql") or alert not in ALERTS, f"{alert.name}: no diagnosis query"
    assert fenced(found["Diagnosis"], "bash"), f"{alert.name}: no diagnosis command"
    assert fenced(found["Mitigation"], "bash"), f"{alert.name}: no mitigation command"
    verification = found["Verification"]
    assert fenced(verification, "promql") or fenced(verification, "bash"), f"{alert.name}: nothing to check with"


# --- PromQL ----------------------------------------------------------------------------------------------------
def test_promql_blocks_are_one_query_each_and_name_only_catalog_series():
    queries = promql_queries()
    assert len(queries) >= 3 * len(RULE_ALERTS)
    for name, query in queries:
        assert query, f"{name}: an empty ```promql block"
        assert "\n\n" not in query, f"{name}: one query per ```promql block:\n{query}"
        unknown = referenced(query) - SERIES
        assert not unknown, (f"{name}: {sorted(unknown)} is no series of the metrics catalog "
                             f"(counters end in _total, histograms in _bucket/_sum/_count):\n{query}")


def _check_rules(queries: list[tuple[str, str]], folder: Path) -> subprocess.CompletedProcess:
    """promtool check rules on a file holding each query as the expr of a recording rule."""
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    groups: dict[str, list[dict[str, str]]] = {}
    for name, query in queries:
        rules = groups.setdefault(name, [])
        rules.append({"record": f"playbook:{name}:q{len(rules)}", "expr": query})
    path = folder / "playbook_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": f"playbook-{name}", "rules": rules}
                                               for name, rules in groups.items()]}, width=4096))
    return subprocess.run([PROMTOOL, "check", "rules", path.name], cwd=folder, capture_output=True, text=True,
                          timeout=120)


def test_promql_blocks_pass_promtool(tmp_path):
    queries = promql_queries()
    done = _check_rules(queries, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout, done.stdout


def test_promtool_check_fails_on_a_broken_query(tmp_path):
    done = _check_rules([("Broken", "sum by (le (rate(srl_rlvr_serving_http_responses_total[5m]))")], tmp_path)
    assert done.returncode != 0, done.stdout


# --- srl-rlvr commands -------------------------------------------------------------------------------------------
def test_srl_rlvr_commands_in_bash_blocks_exist_with_their_options():
    checked, problems = 0, []
    for path in playbook_files():
        for block in fenced(path.read_text(encoding="utf-8"), "bash"):
            for tokens in shell_invocations(block):
                checked += 1
                problems += [f"{path.name}: {shlex.join(tokens)}: {problem}" for problem in check_invocation(tokens)]
    assert not problems, "\n".join(problems)
    assert checked >= 2 * len(RULE_ALERTS)


def test_the_command_check_can_fail():
    def problems(line: str) -> list[str]:
        (tokens,) = shell_invocations(line)
        return check_invocation(tokens)

    assert problems("srl-rlvr registry rollback NAME --reason 'bad deploy'") == []
    assert problems("OUT=x srl-rlvr checkpoints list OUT/srl | tail -n 3") == []
    assert problems("srl-rlvr run CONFIG.yaml --out=OUT --resume --set monitoring.budget_usd=5") == []
    assert problems("srl-rlvr eval --model M --data D --out O --no-think-prefill") == []
    assert problems("srl-rlvr registry --help") == []
    assert "no command 'rollbak'" in problems("srl-rlvr registry rollbak NAME")[0]
    assert "has no option --force" in problems("srl-rlvr registry rollback NAME --force")[0]
    assert "is a group" in problems("srl-rlvr checkpoints")[0]
    assert "needs --data" in problems("srl-rlvr train srl --out OUT --resume")[0]
    assert "takes" in problems("srl-rlvr checkpoints list")[0]
    assert "takes" in problems("srl-rlvr registry rollback NAME EXTRA")[0]
