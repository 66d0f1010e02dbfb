"""What the loop distills: the served cascade's escalations, plus any prompt files, as distill prompts.

An escalation row (:mod:`srl_rlvr.routing.cascade`) carries the answer of the tier that took the request
over, checked by the cascade's verifier (format and agreement), not a gold answer: there is none at
serving time. Distilling against it therefore keeps teacher samples that *agree with the teacher's
earlier answer* (self-consistency), which is weaker than a gold check; rows from ``inputs.prompts`` are
checked against their gold ``answer``. The report counts both kinds. Rows without an answer, and (with
``only_verified``) rows whose answering tier failed the verifier, are dropped and counted; a problem seen
twice is distilled once (the first row wins).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from srl_rlvr.data.loaders.jsonl import iter_json_objects
from srl_rlvr.errors import InvalidRecord, UserInputError
from srl_rlvr.pipelines.distill.run import read_problems


def _escalation_rows(path: Path, only_verified: bool, counts: Counter) -> list[dict[str, Any]]:
    rows = []
    for line, obj in iter_json_objects(path):
        if isinstance(obj, InvalidRecord):
            raise obj
        if not isinstance(obj, dict) or not isinstance(obj.get("problem"), str) or not obj["problem"].strip():
            raise InvalidRecord(str(path), line, "problem", "an escalation row needs the problem text")
        counts["escalations_read"] += 1
        answer = obj.get("answer")
        if answer is None or not str(answer).strip():
            counts["dropped_no_answer"] += 1
            continue
        if only_verified and obj.get("verified") is not True:
            counts["dropped_unverified"] += 1
            continue
        rows.append({"id": str(obj.get("id") or f"{path.stem}-{line}"), "problem": obj["problem"],
                     "answer": str(answer), "domain": obj.get("domain", "math"),
                     "metadata": {"source": "escalation", "file": str(path), "line": line,
                                  "answer_from": obj.get("escalated_tier"),
                                  "answer_simulated": bool(obj.get("escalated_simulated")),
                                  "small_tier": obj.get("small_tier"), "reason": obj.get("reason")}})
    return rows


def collect_prompts(escalation_logs: list[Path], prompt_files: list[Path], out_file: Path,
                    only_verified: bool = True) -> dict[str, Any]:
    """Write the distill prompts to ``out_file``; return the counts (by source, and what was dropped why)."""
    counts: Counter = Counter()
    rows: list[dict[str, Any]] = []
    for path in escalation_logs:
        if not path.is_file():
            counts["missing_logs"] += 1  # a cascade that escalated nothing never creates its log
            continue
        rows += _escalation_rows(path, only_verified, counts)
    for path in prompt_files:
        if not path.is_file():
            raise UserInputError(f"inputs.prompts: {path}: no such file")
        for problem in read_problems(path):
            if problem.domain != "math" and problem.tests is None:
                continue
            rows.append({"id": problem.id, "problem": problem.problem, **problem.gold(), "domain": problem.domain,
                         "metadata": {"source": "prompts", "file": str(path)}})
    seen: set[str] = set()
    kept, ids = [], Counter()
    for row in rows:
        if row["problem"] in seen:
            counts["dropped_duplicate"] += 1
            continue
        seen.add(row["problem"])
        ids[row["id"]] += 1
        if ids[row["id"]] > 1:  # two files may reuse an id for different problems
            row["id"] = f"{row['id']}-{ids[row['id']]}"
        kept.append(row)
        counts[f"from_{row['metadata']['source']}"] += 1
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    return {"file": str(out_file), "prompts": len(kept), **{k: counts[k] for k in sorted(counts)}}


__all__ = ["collect_prompts"]
