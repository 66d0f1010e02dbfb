"""``srl-rlvr route eval``: how much of the weak-to-strong gap the router recovers, and at what cost.

    srl-rlvr route eval --config configs/route-cpu.yaml --data data/demo/test.jsonl --out out/route_eval --limit 100

Steps:

1. Each tier's completions on every item: read from the tier's cached ``predictions`` (an
   ``srl-rlvr eval`` predictions.jsonl, joined by item id), or produced by calling the tier through the
   same ``call_tier`` interface the server uses (:class:`srl_rlvr.routing.callers.BackendCaller`; local
   models run as ``srl-rlvr eval --mode full`` would). Completions are scored against the data's answers
   with :func:`srl_rlvr.rewards.math.math_answer_reward` (the RLVR reward), greedy or avg@k. Tiers run
   here are written to ``OUT/tiers/<name>/predictions.jsonl``, reusable as cached ``predictions``.
2. Held-out quality predictions: the items are split into ``predictor.folds`` folds (seeded); each
   item's predicted P(correct) per tier comes from a predictor fitted on the *other* folds only.
3. Binary metrics on ``eval.pair`` (weak, strong): the router escalates in order of the weak tier's
   predicted quality (lowest first, as the policy does); APGR, CPT(50%), CPT(80%) as in
   :mod:`srl_rlvr.routing.metrics`. The random router escalates in random order (mean over
   ``eval.random_seeds`` orders); the oracle escalates exactly the items the weak tier gets wrong
   (the ceiling any router can reach on this data).
4. The operating point: the full policy over all tiers at ``router.threshold``, or, when that is null,
   at the threshold calibrated (from the prompts alone, no answers) to send ``router.target_strong_share``
   of the items to the strong tier. ``cost`` is the mean dollars per request, ``accuracy`` the mean
   score. The random router's ``cost``/``accuracy`` are its expected values at the same strong share.
5. The cascade (cheapest tier first, escalating while the verifier is unsure) replayed on the recorded
   completions; each escalation is appended to ``OUT/escalations.jsonl`` (the file is started afresh).
6. A predictor fitted on all items is saved as ``OUT/predictor.json`` (for ``load_router``), the per-item
   routes as ``OUT/routes.jsonl``, the numbers as ``OUT/metrics.json`` and the plots as
   ``OUT/cost_quality.png``. Simulated tiers are labelled SIMULATED in all of them.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.routing import metrics as M
from srl_rlvr.routing.backends import TARGET_BACKENDS
from srl_rlvr.routing.calibration import threshold_for_share
from srl_rlvr.routing.callers import BackendCaller, Completion, ReplayCaller, as_completion
from srl_rlvr.routing.cascade import Cascade, EscalationLog, MathVerifier
from srl_rlvr.routing.config import EvalSettings, RouteConfig, TierSpec
from srl_rlvr.routing.policy import choose_tier
from srl_rlvr.routing.predictor import QualityPredictor
from srl_rlvr.routing.targets import Tier, estimate_tokens, measured_tokens_per_s

METRICS_FILE = "metrics.json"
PLOT_FILE = "cost_quality.png"
ESCALATIONS_FILE = "escalations.jsonl"
PREDICTOR_FILE = "predictor.json"
ROUTES_FILE = "routes.jsonl"


@dataclass
class TierOutcome:
    """Per item: the greedy completion, any sampled ones, and their scores against the gold answer."""

    greedy: list[Completion]
    samples: list[list[Completion]]
    greedy_correct: list[float]
    samples_correct: list[list[float]]
    source: str  # "ran here (N s)" or "predictions: PATH"
    tokens_per_s: float | None = None
    greedy_seconds: float | None = None  # wall time of the greedy pass, when run here
    scores: list[float] = field(default_factory=list)  # what the metrics use (greedy or avg@k)


def _load_items(data_path: str, limit: int | None) -> list[Any]:
    from srl_rlvr.data.loaders.registry import load_source

    rows = load_source(data_path).rows[:limit]
    if not rows:
        raise UserInputError(f"{data_path}: no problems to evaluate")
    missing = next((t for t in rows if not (t.answer or "").strip()), None)
    if missing is not None:
        raise UserInputError(f"{data_path}: item {missing.id!r} has no 'answer', so it cannot be scored")
    if len({t.id for t in rows}) != len(rows):
        raise UserInputError(f"{data_path}: item ids repeat; the route eval joins tiers' predictions by id")
    return rows


def _is_correct(completion: str, answer: str) -> float:
    from srl_rlvr.rewards.math import math_answer_reward

    return math_answer_reward(completion, answer)


def _read_predictions(spec: TierSpec, items: Sequence[Any]) -> TierOutcome:
    """Join the tier's cached predictions to the items by id, and rescore them against the data's answers."""
    rows: dict[str, dict[str, Any]] = {}
    for path in spec.predictions:
        if not Path(path).is_file():
            raise UserInputError(f"tier {spec.tier.name!r}: predictions file {path} not found")
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    rows[str(row["id"])] = row
                except (ValueError, KeyError, TypeError):
                    raise UserInputError(f"{path}:{number}: not a predictions row with an 'id'") from None
    greedy, samples = [], []
    for item in items:
        row = rows.get(item.id)
        if row is None or not isinstance(row.get("completion"), str):
            raise UserInputError(f"tier {spec.tier.name!r}: item {item.id!r} has no completion in "
                                 f"{', '.join(spec.predictions)} (evaluate the tier on the same data)")
        greedy.append(Completion(row["completion"], int(row.get("num_tokens") or estimate_tokens(row["completion"]))))
        samples.append([as_completion(s) for s in row.get("sample_completions") or []])
    tps = None
    if spec.pending_cost is not None:
        measured = [measured_tokens_per_s(Path(p).parent) for p in spec.predictions]
        if None in measured:
            raise UserInputError(f"tier {spec.tier.name!r}: cost.output_tokens_per_s is 'measured', "
                                 f"but its predictions "
                                 f"lack a k=1 eval_run.json beside them; give a number instead")
        tps = sum(measured) / len(measured)
    return TierOutcome(greedy, samples, [], [], source="predictions: " + ", ".join(spec.predictions), tokens_per_s=tps)


def _preflight(config: RouteConfig) -> None:
    """Fail before minutes of generation: every tier must be callable here or have cached predictions."""
    for spec in config.tiers:
        tier = spec.tier
        if spec.predictions:
            continue
        backend = TARGET_BACKENDS.get(tier.backend)
        if not backend.runs_in_route_eval:
            raise UserInputError(f"tier {tier.name!r}: backend {tier.backend!r} is a served endpoint; the route eval "
                                 f"needs its cached eval predictions (tiers.{tier.name}.predictions)")
        if (backend.local_model is not None and tier.model and Path(tier.model).is_absolute()
                and not Path(tier.model).exists()):
            raise UserInputError(f"tier {tier.name!r}: model folder {tier.model} does not exist. Train it first "
                                 f"(e.g. `srl-rlvr demo --out out/demo`), point the tier at cached eval predictions "
                                 f"(--set tiers.{tier.name}.predictions=PATH), or use another model "
                                 f"(--set tiers.{tier.name}.model=smollm2-135m)")


def route_eval_callers(settings: EvalSettings) -> dict[str, Any]:
    """``call_tier`` per backend the route eval can call here (the others need cached predictions)."""
    callers = {}
    for name in TARGET_BACKENDS.names():
        caller = TARGET_BACKENDS.get(name).route_eval_caller(settings)
        if caller is not None:
            callers[name] = caller
    return callers


def _run_tier(spec: TierSpec, items: Sequence[Any], caller: BackendCaller, samples_k: int) -> TierOutcome:
    """Call the tier on every item (greedy, then ``samples_k`` samples when > 1), timing the greedy pass."""
    tier = spec.tier
    prompts = [t.problem for t in items]
    started = time.perf_counter()
    greedy = [as_completion(gens[0]) for gens in caller.batch(tier, prompts, 1)]
    greedy_seconds = time.perf_counter() - started
    samples: list[list[Completion]] = [[] for _ in items]
    if samples_k > 1:
        samples = [[as_completion(g) for g in gens] for gens in caller.batch(tier, prompts, samples_k)]
    seconds = time.perf_counter() - started
    tokens = sum(c.num_tokens for c in greedy)
    return TierOutcome(greedy, samples, [], [], source=f"ran here ({seconds:.0f} s)",
                       tokens_per_s=tokens / greedy_seconds if greedy_seconds > 0 else None,
                       greedy_seconds=greedy_seconds)


def _score(outcome: TierOutcome, items: Sequence[Any], score: str, tier: str) -> None:
    outcome.greedy_correct = [_is_correct(c.text, t.answer) for c, t in zip(outcome.greedy, items)]
    outcome.samples_correct = [[_is_correct(s.text, t.answer) for s in ss] for ss, t in zip(outcome.samples, items)]
    if score == "greedy":
        outcome.scores = list(outcome.greedy_correct)
        return
    if any(not s for s in outcome.samples_correct):
        raise UserInputError(f"tier {tier!r}: eval.score avg_at_k needs sampled completions on every item "
                             f"(run `srl-rlvr eval --k K`, or let the route eval run the tier with cascade.k > 1)")
    outcome.scores = [sum(s) / len(s) for s in outcome.samples_correct]


def _write_tier_predictions(out: Path, tier: Tier, items: Sequence[Any], outcome: TierOutcome) -> Path:
    from srl_rlvr.rewards.math import extract_answer

    folder = out / "tiers" / tier.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "predictions.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, item in enumerate(items):
            row: dict[str, Any] = {"id": item.id, "answer": item.answer, "completion": outcome.greedy[i].text,
                                   "extracted_answer": extract_answer(outcome.greedy[i].text),
                                   "correct": outcome.greedy_correct[i] == 1.0,
                                   "num_tokens": outcome.greedy[i].num_tokens}
            if outcome.samples[i]:
                row["samples_correct"] = [c == 1.0 for c in outcome.samples_correct[i]]
                row["sample_completions"] = [s.text for s in outcome.samples[i]]
                row["sample_num_tokens"] = [s.num_tokens for s in outcome.samples[i]]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    # Like `srl-rlvr eval`'s eval_run.json, timing the greedy pass only, so a rerun that reuses these
    # predictions can still derive a measured throughput (targets.measured_tokens_per_s).
    run = {"model": tier.model, "backend": tier.backend, "config": {"k": 1}, "seconds": outcome.greedy_seconds,
           "written_by": "srl-rlvr route eval (greedy pass timing)"}
    (folder / "eval_run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return path


def _folds(n: int, folds: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    fold_of = [0] * n
    for rank, index in enumerate(order):
        fold_of[index] = rank % folds
    return fold_of


def held_out_qualities(prompts: Sequence[str], scores: dict[str, list[float]], folds: int, seed: int, C: float,
                       hash_dim: int, min_per_class: int) -> list[dict[str, float]]:
    """Per item, each tier's predicted P(correct) from a predictor fitted on the other folds."""
    n = len(prompts)
    if n < folds:
        raise UserInputError(f"{n} items cannot be split into {folds} folds; evaluate more items (--limit)")
    fold_of = _folds(n, folds, seed)
    out: list[dict[str, float]] = [{} for _ in range(n)]
    for fold in range(folds):
        train = [i for i in range(n) if fold_of[i] != fold]
        predictor = QualityPredictor.fit([prompts[i] for i in train],
                                         {t: [s[i] for i in train] for t, s in scores.items()},
                                         hash_dim=hash_dim, C=C, min_per_class=min_per_class, seed=seed)
        for i in range(n):
            if fold_of[i] == fold:
                out[i] = predictor.predict(prompts[i])
    return out


def _policy_route(tiers: Sequence[Tier], qualities: Sequence[dict[str, float]], prompts: Sequence[str],
                  threshold: float) -> list[str]:
    """The tier the policy picks per item, ordering tiers by the cost estimated *before* the call (as
    the router does), never by the tokens the tiers went on to generate."""
    return [choose_tier(tiers, q, threshold, lambda t, prompt=prompt: t.estimated_cost(prompt)).tier.name
            for q, prompt in zip(qualities, prompts)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def run_route_eval(config: RouteConfig, data_path: str, out_dir: str | Path,
                   limit: int | None = None) -> dict[str, Any]:
    """Run steps 1-6 of the module docstring; return the metrics (also written to OUT/metrics.json)."""
    from tqdm import tqdm

    _preflight(config)
    out = Path(out_dir)
    items = _load_items(data_path, limit)
    out.mkdir(parents=True, exist_ok=True)
    prompts = [t.problem for t in items]
    ev, cc = config.eval, config.cascade
    cascade_order = cc.tiers or None  # resolved after costs are known
    samples_k = cc.k if cc.k > 1 else 0

    # 1. outcomes per tier
    caller = BackendCaller(route_eval_callers(ev))
    outcomes: dict[str, TierOutcome] = {}
    ran: dict[tuple[str, str | None], TierOutcome] = {}
    tiers: list[Tier] = []
    written: dict[str, str] = {}
    for spec in tqdm(config.tiers, desc="tiers", unit="tier"):
        tier = spec.tier
        key = (tier.backend, tier.model)
        if spec.predictions:
            outcome = _read_predictions(spec, items)
        elif key in ran:  # same backend and model as a tier already run: same completions
            outcome = ran[key]
        else:
            outcome = ran[key] = _run_tier(spec, items, caller, samples_k)
        _score(outcome, items, ev.score, tier.name)
        if spec.pending_cost is not None:
            if not outcome.tokens_per_s:
                raise UserInputError(f"tier {tier.name!r}: no throughput measured for cost.output_tokens_per_s")
            tier = spec.with_measured_throughput(outcome.tokens_per_s)
        tiers.append(tier)
        outcomes[tier.name] = outcome
        if not spec.predictions:
            written[tier.name] = str(_write_tier_predictions(out, tier, items, outcome))

    by_name = {t.name: t for t in tiers}
    costs = {t.name: [t.cost.usd(estimate_tokens(p), outcomes[t.name].greedy[i].num_tokens)
                      for i, p in enumerate(prompts)]
             for t in tiers}
    scores = {name: o.scores for name, o in outcomes.items()}
    by_cost = sorted(tiers, key=lambda t: _mean(costs[t.name]))
    weak_name, strong_name = ev.pair or [by_cost[0].name, by_cost[-1].name]
    weak, strong = scores[weak_name], scores[strong_name]

    # 2. held-out quality predictions
    p = config.predictor
    qualities = held_out_qualities(prompts, scores, p.folds, p.seed, p.C, p.hash_dim, p.min_per_class)

    # 3. binary metrics on the pair
    router_curve = M.gap_curve([-q[weak_name] for q in qualities], weak, strong)
    oracle_curve = M.gap_curve([s_ - w for w, s_ in zip(weak, strong)], weak, strong)
    ours = M.summarize(router_curve)
    rand = M.random_router_summary(weak, strong, ev.random_seeds, seed=ev.seed)

    # 4. the operating point: the full policy over all tiers
    policy_strong = max(tiers, key=lambda t: _mean(costs[t.name])).name
    if config.router.threshold is not None:
        threshold, how = config.router.threshold, "configured"
    else:
        best_cheaper = [max((v for k, v in q.items() if k != policy_strong), default=0.0) for q in qualities]
        threshold = threshold_for_share(best_cheaper, config.router.target_strong_share)
        how = f"calibrated to a {config.router.target_strong_share:g} strong share on these prompts (no answers used)"
    routed = _policy_route(tiers, qualities, prompts, threshold)
    n = len(items)
    accuracy = _mean([scores[r][i] for i, r in enumerate(routed)])
    cost = _mean([costs[r][i] for i, r in enumerate(routed)])
    shares = {t.name: sum(r == t.name for r in routed) / n for t in tiers}
    strong_share = shares[strong_name]
    weak_acc, strong_acc = _mean(weak), _mean(strong)
    weak_cost, strong_cost = _mean(costs[weak_name]), _mean(costs[strong_name])

    # multi-tier sweep (for the plot): every distinct predicted quality as a threshold
    sweep_points = sorted({0.0, 1.0 + 1e-9, *(v for q in qualities for v in q.values())})
    if len(sweep_points) > 200:  # enough for a smooth plot; keeps large evals fast
        sweep_points = [sweep_points[round(i * (len(sweep_points) - 1) / 199)] for i in range(200)]
    sweep = []
    for t in sweep_points:
        r = _policy_route(tiers, qualities, prompts, t)
        sweep.append((_mean([costs[x][i] for i, x in enumerate(r)]), _mean([scores[x][i] for i, x in enumerate(r)])))

    # 5. cascade replay
    order = [by_name[name] for name in cascade_order] if cascade_order else by_cost
    recorded = {name: {prompts[i]: [o.greedy[i], *o.samples[i]] for i in range(n)} for name, o in outcomes.items()}
    log_path = out / ESCALATIONS_FILE
    log_path.write_text("", encoding="utf-8")  # started afresh, and present even when nothing escalates
    cascade = Cascade(order, MathVerifier(cc.min_agreement, cc.require_answer_statement), k=cc.k,
                      log=EscalationLog(log_path), name=f"cascade-{config.name}", domain=items[0].domain)
    replay = ReplayCaller(recorded)
    cascade_rows = []
    for item in tqdm(items, desc="cascade", unit="item"):
        res = cascade.run(item.problem, replay, problem_id=item.id)
        # The live cascade treats a failing tier as unsure and moves on; in a replay the only failure is a
        # missing recording, and moving on would silently score the next tier instead.
        if res.errors:
            reason = res.errors[0][1]  # (tier, reason); the reason names the tier
            raise UserInputError(f"cascade.k={cc.k} needs {cc.k} completions per item from every tier but the last; "
                                 f"{reason} (run the tier here, or `srl-rlvr eval --k {cc.k}`, or set cascade.k: 1)")
        cascade_rows.append((item, res))
    cascade_correct = [_is_correct(r.completion, it.answer) for it, r in cascade_rows]
    cascade_metrics = {
        "tiers": [t.name for t in order],
        "k": cc.k,
        "accuracy": _mean(cascade_correct),
        "cost": _mean([r.cost for _, r in cascade_rows]),
        "escalation_rate": _mean([float(bool(r.escalations)) for _, r in cascade_rows]),
        "answered_by": {t.name: sum(r.tier.name == t.name for _, r in cascade_rows) / n for t in order},
        # accuracy of the answers each tier was left to give (for the first tier: how often the verifier
        # was right to trust it; the verifier never sees the gold answer, this is scored afterwards)
        "accuracy_by_answering_tier": {
            t.name: _mean([c for c, (_, r) in zip(cascade_correct, cascade_rows) if r.tier.name == t.name])
            for t in order if any(r.tier.name == t.name for _, r in cascade_rows)},
        "final_answer_verified": _mean([float(r.verified) for _, r in cascade_rows]),
        "escalations_logged": sum(len(r.escalations) for _, r in cascade_rows),
        "escalation_reasons": dict(Counter(e.reason.split(":")[0] for _, r in cascade_rows for e in r.escalations)),
        "log": str(log_path),
    }

    # 6. outputs
    final = QualityPredictor.fit(prompts, scores, hash_dim=p.hash_dim, C=p.C, min_per_class=p.min_per_class,
                                 seed=p.seed)
    final.save(out / PREDICTOR_FILE)
    with (out / ROUTES_FILE).open("w", encoding="utf-8") as f:
        for i, item in enumerate(items):
            f.write(json.dumps({"id": item.id, "routed": routed[i], "held_out_quality": qualities[i],
                                "scores": {k: v[i] for k, v in scores.items()},
                                "cost": {k: v[i] for k, v in costs.items()}}) + "\n")
    simulated = [t.name for t in tiers if t.simulated]
    metrics: dict[str, Any] = {
        "data": str(data_path), "n": n, "limit": limit, "score": ev.score,
        "held_out": (f"{p.folds}-fold cross-fitting over --data (seed {p.seed}): each item's predicted quality comes "
                     f"from a predictor fitted on the other folds' outcomes only"),
        "pair": {"weak": weak_name, "strong": strong_name},
        "apgr": ours["apgr"], "cpt50": ours["cpt50"], "cpt80": ours["cpt80"],
        "cost": cost, "accuracy": accuracy, "strong_share": strong_share, "threshold": threshold,
        "threshold_source": how, "router_model": f"router-{config.name}-{threshold:.6g}", "tier_shares": shares,
        "random": {**rand, "apgr_expected": 0.5, "strong_share": strong_share,
                   "cost": (1 - strong_share) * weak_cost + strong_share * strong_cost,
                   "accuracy": (1 - strong_share) * weak_acc + strong_share * strong_acc},
        "oracle": M.summarize(oracle_curve),
        "tiers": {t.name: {**t.describe(), "accuracy": _mean(scores[t.name]), "mean_cost": _mean(costs[t.name]),
                           "output_tokens_per_s": outcomes[t.name].tokens_per_s, "source": outcomes[t.name].source}
                  for t in tiers},
        "cascade": cascade_metrics,
        "simulated_tiers": simulated,
        "files": {"predictor": str(out / PREDICTOR_FILE), "routes": str(out / ROUTES_FILE),
                  "plot": str(out / PLOT_FILE), "escalations": str(log_path), "tier_predictions": written},
    }
    if simulated:
        metrics["simulated_note"] = (f"SIMULATED: tier(s) {', '.join(simulated)} are stand-ins "
                                     f"(cost and quality are not "
                                     f"measured on a real model); every number involving them is simulated")
    if router_curve.gap == 0:
        metrics["note"] = "the pair performs the same on these items: there is no gap to recover, APGR/CPT are null"
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _plot(out / PLOT_FILE, router_curve, oracle_curve, metrics, sweep, costs, scores)
    return metrics


def _plot(path: Path, curve: M.GapCurve, oracle: M.GapCurve, metrics: dict[str, Any], sweep: list[tuple[float, float]],
          costs: dict[str, list[float]], scores: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    pair = metrics["pair"]
    if curve.pgr is not None:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        left.plot(curve.shares, curve.pgr, label=f"router (APGR {fmt(metrics['apgr'])})")
        left.plot(oracle.shares, oracle.pgr, ":", label=f"oracle (APGR {fmt(metrics['oracle']['apgr'])})")
        left.plot([0, 1], [0, 1], "--", label=f"random (APGR {fmt(metrics['random']['apgr'])})")
    left.set_xlabel(f"share of calls to the strong tier ({pair['strong']})")
    left.set_ylabel(f"performance gap recovered ({pair['weak']} -> {pair['strong']})")
    left.legend(loc="lower right")
    left.grid(alpha=0.3)

    xs, ys = zip(*sorted(sweep))
    right.plot(xs, ys, "-", alpha=0.7, label="router (threshold sweep)")
    right.plot([metrics["cost"]], [metrics["accuracy"]], "o", label=f"router @ {metrics['threshold']:.3g}")
    for number, name in enumerate(scores):
        sim = " (SIMULATED)" if name in metrics["simulated_tiers"] else ""
        right.plot([sum(costs[name]) / len(costs[name])], [sum(scores[name]) / len(scores[name])], "s")
        right.annotate(name + sim, (sum(costs[name]) / len(costs[name]), sum(scores[name]) / len(scores[name])),
                       fontsize=8, textcoords="offset points", xytext=(4, -12 - 9 * number))  # tiers may coincide
    w, s = pair["weak"], pair["strong"]
    right.plot([sum(costs[w]) / len(costs[w]), sum(costs[s]) / len(costs[s])],
               [sum(scores[w]) / len(scores[w]), sum(scores[s]) / len(scores[s])], "--", label="random")
    right.plot([metrics["cascade"]["cost"]], [metrics["cascade"]["accuracy"]], "^", label="cascade")
    right.margins(x=0.12, y=0.12)  # room for the tier labels
    right.set_xlabel("mean cost per request (USD)")
    right.set_ylabel("accuracy")
    right.legend(loc="lower right", fontsize=8)
    right.grid(alpha=0.3)
    title = f"route eval: {metrics['n']} items, held-out ({metrics['held_out'].split(':')[0]})"
    if metrics["simulated_tiers"]:
        title += f"\nSIMULATED tier(s): {', '.join(metrics['simulated_tiers'])} (cost and quality are stand-ins)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
