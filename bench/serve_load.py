"""Serving throughput under load: N concurrent clients against `srl-rlvr serve`, against plain HF generate.

    nice -n 19 env OMP_NUM_THREADS=1 python bench/serve_load.py                  # SmolLM2-135M, 8 clients
    nice -n 19 env OMP_NUM_THREADS=1 python bench/serve_load.py --model tiny     # seconds: a smoke run

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


def start_server(model_path: str, clients: int, scratch: Path) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    config = scratch / "serve.yaml"
    config.write_text(f"served_model_name: bench\nhf: {{max_batch_size: {clients}}}\n"
                      "limits: {max_waiting_requests: 4096}\n", encoding="utf-8")
    log = scratch / "server.log"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="'smollm2-135m', 'tiny' or a model folder")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the load phase")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=64, help="distinct problems the clients cycle through")
    a = parser.parse_args()
    if a.model == "tiny":
        a.seconds, a.baseline_requests = min(a.seconds, 5.0), min(a.baseline_requests, 8)

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_path = resolve(a.model, scratch)
        prompts = build_prompts(max(a.prompts, a.baseline_requests))
        baseline = run_baseline(model_path, prompts[: a.baseline_requests], a.max_tokens)
        proc, url, _ = start_server(model_path, a.clients, scratch)
        try:
            warm = {"model": "bench", "messages": prompts[0], "max_tokens": 4, "temperature": 0}
            httpx.post(f"{url}/v1/chat/completions", json=warm, timeout=300).raise_for_status()
            server = run_load(url, prompts, a.clients, a.seconds, a.max_tokens)
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    same = [i for i in server["answers"] if i < len(baseline["texts"])]
    equal = sum(server["answers"][i] == baseline["texts"][i] for i in same)
    rows = []
    for name, r in (("baseline (sequential HF generate)", baseline), (f"server ({a.clients} clients, hf)", server)):
        rows.append((name, r["requests"] / r["seconds"], r["tokens"] / r["seconds"],
                     percentile(r["latencies"], 50), percentile(r["latencies"], 99), r["errors"], r["requests"]))
    print()
    print(f"model: {a.model}   max_tokens: {a.max_tokens}   greedy   "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"{'side':<36}{'req/s':>8}{'tok/s':>9}{'p50 s':>8}{'p99 s':>8}{'errors':>8}{'requests':>10}")
    for name, rps, tps, p50, p99, errors, n in rows:
        print(f"{name:<36}{rps:>8.2f}{tps:>9.1f}{p50:>8.2f}{p99:>8.2f}{errors:>8}{n:>10}")
    ratio_tokens = rows[1][2] / rows[0][2]
    ratio_requests = rows[1][1] / rows[0][1]
    print(f"ratio server/baseline: {ratio_tokens:.2f}x tokens/s, {ratio_requests:.2f}x requests/s")
    print(f"answers equal to the baseline's greedy text: {equal}/{len(same)} (same prompts)")
    if server["error_samples"]:
        print("first errors:", *server["error_samples"], sep="\n  ")


if __name__ == "__main__":
    main()
