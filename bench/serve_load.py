"""Serving under load: throughput against plain HF generate, and short requests behind a long one.

    nice -n 19 env OMP_NUM_THREADS=1 python bench/serve_load.py                  # SmolLM2-135M, 8 clients
    nice -n 19 env OMP_NUM_THREADS=1 python bench/serve_load.py --model tiny     # seconds: a smoke run
    python bench/serve_load.py --scenario long-short                             # static vs continuous batching

``--scenario long-short`` starts two servers with equal settings, ``hf.scheduler: static`` and
``continuous``, and in each of ``--rounds`` rounds (alternating: static, then continuous, so that other
load on the machine falls on both) sends each server one long request (a story, ``--long-tokens``
1024, greedy: it runs to its limit) and, once it is generating, ``--shorts`` short requests (demo
problems, ``--max-tokens``) one every ``--stagger`` seconds. It prints the short requests' p50/p95/max
latency, the long request's latency, errors, and the static/continuous ratio of the short p95, from
this one run. Static batching makes every short request wait until the long one ends; continuous
batching admits it at the next decode step.

``--scenario throughput`` (the default):

Both sides do the same work, measured in this one run: the same chat prompts (demo-task problems in the
training prompt format), the same max_tokens, greedy decoding, the same torch thread count.

* baseline — sequential plain ``model.generate`` on one prompt at a time, in this process;
* server   — ``srl-rlvr serve`` (hf backend) in a subprocess, driven by N client threads for T seconds.

Prints requests/s, generated tokens/s, p50/p99 latency, the error count, how many answers equal the
baseline's greedy text for the same prompt, and the server/baseline throughput ratio. The baseline runs
first and is released before the server starts, so the two never share the CPU.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from tqdm import tqdm


def build_prompts(n: int) -> list[list[dict]]:
    from srl_rlvr.data.demo import make_demo_task
    from srl_rlvr.prompts import full_problem_messages

    _, test = make_demo_task(n_train=0, n_test=n, seed=0)
    return [full_problem_messages(row["problem"]) for row in test]


def resolve(model: str, scratch: Path) -> str:
    from srl_rlvr.models import build_tiny_model, resolve_model

    return str(build_tiny_model(scratch / "tiny")) if model == "tiny" else resolve_model(model)


def run_baseline(model_path: str, prompts: list[list[dict]], max_tokens: int) -> dict:
    """Sequential plain transformers generate, greedy, one prompt at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from srl_rlvr.prompts import render_generation_prompt

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    eos = tokenizer.eos_token_id

    def one(messages: list[dict]) -> tuple[str, int]:
        ids = tokenizer(render_generation_prompt(tokenizer, messages), add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=eos)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        new = new[: new.index(eos)] if eos in new else new
        return tokenizer.decode(new, skip_special_tokens=True), len(new)

    one(prompts[0])  # warm-up
    texts, tokens, latencies = [], 0, []
    started = time.perf_counter()
    for messages in tqdm(prompts, desc="baseline (sequential generate)", unit="req"):
        t0 = time.perf_counter()
        text, n = one(messages)
        latencies.append(time.perf_counter() - t0)
        texts.append(text)
        tokens += n
    elapsed = time.perf_counter() - started
    return {"requests": len(prompts), "tokens": tokens, "seconds": elapsed, "latencies": latencies, "texts": texts,
            "errors": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path: str, clients: int, scratch: Path,
                 scheduler: str = "continuous") -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    config = scratch / f"serve-{scheduler}.yaml"
    config.write_text(f"served_model_name: bench\nhf: {{max_batch_size: {clients}, scheduler: {scheduler}}}\n"
                      "limits: {max_waiting_requests: 4096}\n", encoding="utf-8")
    log = scratch / f"server-{scheduler}.log"
    cmd = [sys.executable, "-m", "srl_rlvr.cli.main", "serve", "--model", model_path, "--config", str(config),
           "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the server did not start within 300 s:\n{log.read_text()[-3000:]}")


def run_load(url: str, prompts: list[list[dict]], clients: int, seconds: float, max_tokens: int) -> dict:
    lock = threading.Lock()
    latencies: list[float] = []
    answers: dict[int, str] = {}
    totals = {"tokens": 0, "errors": 0}
    error_samples: list[str] = []
    progress = tqdm(desc=f"server ({clients} clients, {seconds:.0f} s)", unit="req")
    start_gate = threading.Barrier(clients)
    deadline_box: list[float] = []

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            start_gate.wait()
            i = k
            while time.perf_counter() < deadline_box[0]:
                index = i % len(prompts)
                body = {"model": "bench", "messages": prompts[index], "max_tokens": max_tokens, "temperature": 0}
                t0 = time.perf_counter()
                try:
                    response = http.post("/v1/chat/completions", json=body)
                    ok = response.status_code == 200
                    data = response.json() if ok else None
                except httpx.HTTPError as exc:
                    ok, data = False, None
                    response = exc
                latency = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(latency)
                        totals["tokens"] += data["usage"]["completion_tokens"]
                        answers.setdefault(index, data["choices"][0]["message"]["content"])
                    else:
                        totals["errors"] += 1
                        if len(error_samples) < 3:
                            error_samples.append(str(getattr(response, "text", response))[:300])
                progress.update(1)
                i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    deadline_box.append(started + seconds)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started  # includes the requests still running at the deadline
    progress.close()
    return {"requests": len(latencies), "tokens": totals["tokens"], "seconds": elapsed, "latencies": latencies,
            "errors": totals["errors"], "answers": answers, "error_samples": error_samples}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


LONG_PROMPT = [{"role": "user", "content": "Write a very long story about a dragon who learns arithmetic. "
                "Make it at least 3000 words long, with many chapters."}]


def run_long_short(url: str, shorts: list[list[dict]], long_tokens: int, short_tokens: int,
                   stagger_s: float) -> dict:
    """One long request, then the short ones sent while it runs; latencies from send to full answer."""
    out: dict = {"short": [], "short_texts": {}, "errors": 0, "long": None, "long_tokens": 0}
    lock = threading.Lock()

    def ask(messages: list[dict], max_tokens: int, index: int | None) -> None:
        body = {"model": "bench", "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        t0 = time.perf_counter()
        try:
            response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=900)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        latency = time.perf_counter() - t0
        with lock:
            if not ok:
                out["errors"] += 1
            elif index is None:
                out["long"], out["long_tokens"] = latency, response.json()["usage"]["completion_tokens"]
            else:
                out["short"].append(latency)
                out["short_texts"][index] = response.json()["choices"][0]["message"]["content"]

    long_thread = threading.Thread(target=ask, args=(LONG_PROMPT, long_tokens, None))
    long_thread.start()
    time.sleep(2.0)  # the long request is prefilled and decoding
    threads = []
    for index, messages in enumerate(shorts):
        threads.append(threading.Thread(target=ask, args=(messages, short_tokens, index)))
        threads[-1].start()
        time.sleep(stagger_s)
    for t in threads + [long_thread]:
        t.join()
    return out


def long_short(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_path = resolve(a.model, scratch)
        shorts = build_prompts(a.shorts)
        solo = run_baseline(model_path, shorts, a.max_tokens)["texts"]  # each short prompt alone, plain generate
        results: dict[str, list[dict]] = {"static": [], "continuous": []}
        servers = {}
        try:
            for scheduler in results:  # both up at once, idle when not asked: rounds alternate between them,
                servers[scheduler] = start_server(model_path, a.shorts + 1, scratch, scheduler)  # so load hits both
                warm = {"model": "bench", "messages": shorts[0], "max_tokens": 4, "temperature": 0}
                httpx.post(f"{servers[scheduler][1]}/v1/chat/completions", json=warm, timeout=300).raise_for_status()
            for _ in tqdm(range(a.rounds), desc="rounds (static, then continuous)", unit="round"):
                for scheduler, (_, url, _) in servers.items():
                    results[scheduler].append(run_long_short(url, shorts, a.long_tokens, a.max_tokens, a.stagger))
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=60)

    print()
    print(f"model: {a.model}   one long request (max_tokens {a.long_tokens}) + {a.shorts} short ones "
          f"(max_tokens {a.max_tokens}, one every {a.stagger:.1f} s), greedy, {a.rounds} rounds per side, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"{'scheduler':<12}{'short p50 s':>12}{'short p95 s':>12}{'short max s':>12}{'long s':>9}"
          f"{'long tok':>9}{'errors':>8}{'n short':>9}")
    p95 = {}
    for scheduler, rounds in results.items():
        short = [x for r in rounds for x in r["short"]]
        longs = [r["long"] for r in rounds if r["long"] is not None]
        p95[scheduler] = percentile(short, 95)
        print(f"{scheduler:<12}{percentile(short, 50):>12.2f}{p95[scheduler]:>12.2f}{max(short, default=0):>12.2f}"
              f"{sum(longs) / max(1, len(longs)):>9.1f}{rounds[-1]['long_tokens']:>9}"
              f"{sum(r['errors'] for r in rounds):>8}{len(short):>9}")
    per_round = [percentile(s["short"], 95) / percentile(c["short"], 95)
                 for s, c in zip(results["static"], results["continuous"])]
    print(f"short-request p95, static / continuous: {p95['static'] / p95['continuous']:.1f}x "
          f"(per round: {', '.join(f'{r:.1f}x' for r in per_round)})")
    for scheduler, rounds in results.items():
        equal = sum(text == solo[i] for r in rounds for i, text in r["short_texts"].items())
        print(f"{scheduler}: short answers equal to plain solo generate (greedy): {equal}/{a.shorts * len(rounds)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["throughput", "long-short"], default="throughput")
    parser.add_argument("--scheduler", choices=["both", "continuous", "static"], default="both",
                        help="throughput: the server's hf.scheduler (both: one after the other, same baseline)")
    parser.add_argument("--rounds", type=int, default=2, help="long-short: rounds per scheduler")
    parser.add_argument("--shorts", type=int, default=8, help="long-short: short requests per round")
    parser.add_argument("--long-tokens", type=int, default=1024, help="long-short: max_tokens of the long request")
    parser.add_argument("--stagger", type=float, default=1.0, help="long-short: seconds between short requests")
    parser.add_argument("--model", default="smollm2-135m", help="'smollm2-135m', 'tiny' or a model folder")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the load phase")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=64, help="distinct problems the clients cycle through")
    a = parser.parse_args()
    if a.scenario == "long-short":
        long_short(a)
        return
    if a.model == "tiny":
        a.seconds, a.baseline_requests = min(a.seconds, 5.0), min(a.baseline_requests, 8)

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_path = resolve(a.model, scratch)
        prompts = build_prompts(max(a.prompts, a.baseline_requests))
        baseline = run_baseline(model_path, prompts[: a.baseline_requests], a.max_tokens)
        servers = {}
        for scheduler in (("static", "continuous") if a.scheduler == "both" else (a.scheduler,)):
            proc, url, _ = start_server(model_path, a.clients, scratch, scheduler)
            try:
                warm = {"model": "bench", "messages": prompts[0], "max_tokens": 4, "temperature": 0}
                httpx.post(f"{url}/v1/chat/completions", json=warm, timeout=300).raise_for_status()
                servers[scheduler] = run_load(url, prompts, a.clients, a.seconds, a.max_tokens)
            finally:
                proc.terminate()
                proc.wait(timeout=60)

    rows = [("baseline (sequential HF generate)", baseline)]
    rows += [(f"server ({a.clients} clients, {scheduler})", r) for scheduler, r in servers.items()]
    print()
    print(f"model: {a.model}   max_tokens: {a.max_tokens}   greedy   "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"{'side':<40}{'req/s':>8}{'tok/s':>9}{'p50 s':>8}{'p99 s':>8}{'errors':>8}{'requests':>10}")
    for name, r in rows:
        print(f"{name:<40}{r['requests'] / r['seconds']:>8.2f}{r['tokens'] / r['seconds']:>9.1f}"
              f"{percentile(r['latencies'], 50):>8.2f}{percentile(r['latencies'], 99):>8.2f}{r['errors']:>8}"
              f"{r['requests']:>10}")
    base_tps, base_rps = baseline["tokens"] / baseline["seconds"], baseline["requests"] / baseline["seconds"]
    for scheduler, server in servers.items():
        same = [i for i in server["answers"] if i < len(baseline["texts"])]
        equal = sum(server["answers"][i] == baseline["texts"][i] for i in same)
        print(f"{scheduler}: ratio server/baseline {server['tokens'] / server['seconds'] / base_tps:.2f}x tokens/s, "
              f"{server['requests'] / server['seconds'] / base_rps:.2f}x requests/s; answers equal to the "
              f"baseline's greedy text: {equal}/{len(same)}")
        if server["error_samples"]:
            print("first errors:", *server["error_samples"], sep="\n  ")


if __name__ == "__main__":
    main()
