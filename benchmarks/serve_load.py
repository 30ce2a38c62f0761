"""Load test of `moslim serve` on 127.0.0.1: dynamic batching vs one request at a time, side by side.

    nice -n 19 .venv/bin/python benchmarks/serve_load.py --policy smollm2-135m-instruct \
        --reward-model runs/demo/rm [--clients 8] [--requests 32] [--max-tokens 64] [--modes batched,single]

For each mode the script starts its own server (``moslim serve`` on a free local port),
waits for it, sends one warm-up request, then has ``--clients`` concurrent clients send ``--requests``
chat completions in all (questions and preferences cycle through fixed lists; no seeds, so requests
may share batches), ``--rounds`` times, and afterwards ``--score-requests`` /v1/score requests of one pair each. It
reports requests/s and generated tokens/s, latency p50 / p99, errors (non-200 answers or failed
connections), the batches the server ran, and the server's resident memory after the warm-up, after
each round and at the end. ``single`` is the same server with ``--max-batch 1 --batch-window-ms 0``. The server only
ever binds and is only ever called on 127.0.0.1. Ratios between modes are what to read: absolute
figures move with the machine and its other load.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"
QUESTIONS = ["How do I boil an egg?", "Why is the sky blue?", "Give me tips for a job interview.",
             "What is a prime number?", "How do plants make food?", "Explain what a budget is.",
             "How can I sleep better?", "What causes rain?"]
PREFERENCES = [{"verbosity": 0}, {"verbosity": 3}, {"helpfulness": 2}, {"verbosity": 1, "helpfulness": 2}, {}]
MODES = {"batched": ["--max-batch", "16", "--batch-window-ms", "10"],
         "single": ["--max-batch", "1", "--batch-window-ms", "0"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] if ordered else float("nan")


async def chat_load(url: str, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    counter = itertools.count()
    latencies, errors, tokens = [], [], 0

    async def one_client(http: httpx.AsyncClient) -> None:
        nonlocal tokens
        while (i := next(counter)) < requests:
            body = {"model": model, "max_tokens": max_tokens, "preferences": PREFERENCES[i % len(PREFERENCES)],
                    "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]}
            start = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/chat/completions", json=body)
            except httpx.HTTPError as err:
                errors.append(type(err).__name__)
                continue
            if response.status_code != 200:
                errors.append(response.status_code)
                continue
            latencies.append(time.perf_counter() - start)
            tokens += response.json()["usage"]["completion_tokens"]

    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=clients)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(one_client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"wall_s": wall, "requests_per_s": len(latencies) / wall, "tokens_per_s": tokens / wall,
            "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99), "ok": len(latencies),
            "errors": errors, "completion_tokens": tokens, "latencies": latencies}


async def score_load(url: str, clients: int, requests: int) -> dict:
    counter = itertools.count()
    latencies, errors = [], []

    async def one_client(http: httpx.AsyncClient) -> None:
        while (i := next(counter)) < requests:
            pair = {"prompt": QUESTIONS[i % len(QUESTIONS)], "response": "Put it in boiling water. " * (1 + i % 6),
                    "preferences": PREFERENCES[i % len(PREFERENCES)]}
            start = time.perf_counter()
            response = await http.post(f"{url}/v1/score", json={"pairs": [pair]})
            if response.status_code == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors.append(response.status_code)

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(one_client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"wall_s": wall, "requests_per_s": len(latencies) / wall, "p50_s": percentile(latencies, 50),
            "p99_s": percentile(latencies, 99), "ok": len(latencies), "errors": errors}


def merge(rounds: list[dict]) -> dict:
    """One summary over several rounds (latency percentiles over all their requests)."""
    latencies = [x for r in rounds for x in r.pop("latencies")]
    wall, tokens = sum(r["wall_s"] for r in rounds), sum(r["completion_tokens"] for r in rounds)
    return {"wall_s": wall, "requests_per_s": len(latencies) / wall, "tokens_per_s": tokens / wall,
            "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99), "ok": len(latencies),
            "errors": [e for r in rounds for e in r["errors"]], "completion_tokens": tokens,
            "rounds": rounds}


def start_server(args, mode: str, log_file) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-c", "import sys; from moslim.cli import main; sys.exit(main(sys.argv[1:]))",
               "serve", "--policy", args.policy, "--host", HOST,
               "--port", str(port), "--max-tokens", str(args.max_tokens), "--max-queue", "256", *MODES[mode]]
    if args.reward_model:
        command += ["--reward-model", args.reward_model]
    server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}; see {log_file.name}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    server.terminate()
    raise RuntimeError(f"the server did not answer within 300 s; see {log_file.name}")


def run_mode(args, mode: str, log_file) -> dict:
    server, url = start_server(args, mode, log_file)
    try:
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        asyncio.run(chat_load(url, model, 1, 1, args.max_tokens))  # warm-up, not counted
        rss = [rss_mib(server.pid)]
        rounds = []
        for _ in range(args.rounds):  # memory after each round: flat if nothing accumulates
            rounds.append(asyncio.run(chat_load(url, model, args.clients, args.requests, args.max_tokens)))
            rss.append(rss_mib(server.pid))
        chat = rounds[0] if len(rounds) == 1 else merge(rounds)
        health_chat = httpx.get(f"{url}/health").json()["generation"]
        score = asyncio.run(score_load(url, args.clients, args.score_requests)) \
            if args.reward_model and args.score_requests else None
        health = httpx.get(f"{url}/health").json()
        return {"mode": mode, "chat": chat, "score": score, "rss_mib": rss + [rss_mib(server.pid)],
                "generation_batches": health_chat,
                "scoring_batches": health["scoring"]}
    finally:
        server.terminate()
        server.wait(30)


def report(results: list[dict], args) -> None:
    print(f"\n{args.clients} clients, {args.rounds} x {args.requests} chat completions of up to "
          f"{args.max_tokens} tokens (policy {args.policy}, reward model {args.reward_model or 'none'})")
    print(f"{'mode':8} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p99 s':>7} {'errors':>6} {'batches':>8} "
          f"{'rows/batch':>10}  server RSS MiB (after warm-up, each round, the scoring)")
    for r in results:
        c, g = r["chat"], r["generation_batches"]
        warm = 1  # the warm-up request ran as one batch of one row
        batches, rows = g["batches"] - warm, g["rows"] - warm
        print(f"{r['mode']:8} {c['requests_per_s']:7.2f} {c['tokens_per_s']:7.1f} {c['p50_s']:7.2f} {c['p99_s']:7.2f} "
              f"{len(c['errors']):6d} {batches:8d} {rows / max(batches, 1):10.1f}  "
              f"{' -> '.join(f'{m:.0f}' for m in r['rss_mib'])}")
    scored = [r for r in results if r["score"]]
    if scored:
        print(f"\n/v1/score, {args.clients} clients, {args.score_requests} requests of one pair each")
        for r in scored:
            s, b = r["score"], r["scoring_batches"]
            print(f"{r['mode']:8} {s['requests_per_s']:7.1f} req/s, p50 {s['p50_s'] * 1000:.0f} ms, "
                  f"p99 {s['p99_s'] * 1000:.0f} ms, errors {len(s['errors'])}, "
                  f"{b['rows'] / max(b['batches'], 1):.1f} pairs per batch")
    by_mode = {r["mode"]: r for r in results}
    if {"batched", "single"} <= set(by_mode):
        ratio = by_mode["batched"]["chat"]["requests_per_s"] / by_mode["single"]["chat"]["requests_per_s"]
        print(f"\nthroughput, batched / one at a time: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="smollm2-135m-instruct")
    parser.add_argument("--reward-model", default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the chat load (memory after each)")
    parser.add_argument("--score-requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--modes", default="batched,single", help="comma-separated: batched, single")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s) {sorted(unknown)}; valid: {', '.join(MODES)}")
    results = []
    with tempfile.NamedTemporaryFile("w", prefix="serve-load-", suffix=".log", delete=False) as log_file:
        for mode in modes:
            print(f"{mode}: starting the server (log: {log_file.name})", file=sys.stderr)
            results.append(run_mode(args, mode, log_file))
    report(results, args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
