#!/usr/bin/env python3
"""What explanations on `berth serve` cost ordinary requests (docs/perf.md, issue 21).

Starts `berth serve` on MODEL, then times ordinary one-text requests sent one
at a time: first with nothing else running, then while a client keeps one
explanation in flight at all times (`"explain": {"steps": STEPS}` on a long
text; the server's default --explain-concurrency 1 and --explain-threads 1).
Prints the latency percentiles of both phases and how many explanations
finished. Standard library only.

    python3 tools/serve-explain-latency.py --berth target/release/berth --model runs/sst2 \
        --texts dev200.txt [--requests 300] [--steps 64]
"""

import argparse
import json
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def percentiles(ms):
    ms = sorted(ms)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "mean": statistics.mean(ms)}


def ordinary(url, texts, n):
    times = []
    for i in range(n):
        started = time.perf_counter()
        status, _ = post(url, {"inputs": texts[i % len(texts)]})
        assert status == 200, status
        times.append(1e3 * (time.perf_counter() - started))
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True, help="one text per line")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--steps", type=int, default=64)
    args = ap.parse_args()
    texts = [l.strip() for l in open(args.texts) if l.strip()]
    long_text = " ".join(texts[:12])
    server = subprocess.Popen([args.berth, "serve", "--model", args.model, "--device", "cpu", "--port", "0"],
                              stderr=subprocess.PIPE, text=True)
    try:
        address = None
        for line in server.stderr:
            if "listening on http://" in line:
                address = line.split("listening on http://")[1].strip()
                break
        assert address, "the server did not start"
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        url = f"http://{address}/predict"
        ordinary(url, texts, 20)  # warm-up
        idle = ordinary(url, texts, args.requests)

        stop = threading.Event()
        done = {"explanations": 0, "refused": 0, "seconds": []}

        def explain_forever():
            while not stop.is_set():
                started = time.perf_counter()
                status, _ = post(url, {"inputs": long_text, "explain": {"steps": args.steps}})
                if status == 200:
                    done["explanations"] += 1
                    done["seconds"].append(time.perf_counter() - started)
                else:
                    done["refused"] += 1

        explainer = threading.Thread(target=explain_forever)
        explainer.start()
        time.sleep(0.5)
        busy = ordinary(url, texts, args.requests)
        stop.set()
        explainer.join()
        result = {
            "requests per phase": args.requests,
            "idle ms": percentiles(idle),
            "while explaining ms": percentiles(busy),
            "explanations finished": done["explanations"],
            "explanation seconds (median)": statistics.median(done["seconds"]) if done["seconds"] else None,
            "explanations refused": done["refused"],
        }
        print(json.dumps(result, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
