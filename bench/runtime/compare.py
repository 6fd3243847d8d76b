#!/usr/bin/python3
"""Compares edgeloop's built-in ONNX runtime with PyTorch on the same models and thread count:
the p50 latency of single-row requests (batch 1) and rows per second at batch 32.

    /usr/bin/python3 bench/runtime/compare.py [--threads 1] [--seconds 3] [--rounds 3] [--tags openblas]

It exports the reference MLP (784-256-128-10, `edgeloop train`'s shape), the small CNN and the
MobileNet-style network of internal/runtime/builtin/testdata/make_cnn.py to a temporary
directory, times PyTorch (eager, torch.no_grad, torch.set_num_threads) on them, runs
./bench/runtime on the same files with GOMAXPROCS set to the same thread count, alternating the
two for --rounds rounds and keeping each side's best, and prints one Markdown table. With --tags openblas the runtime's matrix products run on OpenBLAS
(OPENBLAS_NUM_THREADS is set to the thread count too). Run it from the repository root with
Debian's python3 (torch).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "exporter", "runtime", "builtin", "testdata"))
import make_cnn  # noqa: E402


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def time_torch(model, shape, seconds):
    out = {}
    with torch.no_grad():
        for batch in (1, 32):
            x = torch.randn((batch,) + shape)
            for _ in range(10):
                model(x)
            lat = []
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                t = time.perf_counter()
                model(x)
                lat.append(time.perf_counter() - t)
            if batch == 1:
                lat.sort()
                out["p50_us_batch1"] = lat[len(lat) // 2] * 1e6
            else:
                out["rows_per_s_batch32"] = batch * len(lat) / sum(lat)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--tags", default="", help="go build tags for the runtime, such as openblas")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds alternating PyTorch and the runtime; each side's best round is reported")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    models = [("mlp", mlp(), (784,)), ("small_cnn", make_cnn.SmallCNN(), (1, 28, 28)),
              ("mobilenet", make_cnn.MobileNetish(), (3, 32, 32))]
    best = lambda a, b: {"p50_us_batch1": min(a["p50_us_batch1"], b["p50_us_batch1"]),
                         "rows_per_s_batch32": max(a["rows_per_s_batch32"], b["rows_per_s_batch32"])}
    with tempfile.TemporaryDirectory() as d:
        for name, model, shape in models:
            make_cnn.randomize_bn(model, gen)
            model.eval()
            make_cnn.export(model, torch.randn((1,) + shape), os.path.join(d, name + ".onnx"), keep_bn=False)
        env = dict(os.environ, GOMAXPROCS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
        subprocess.run(["go", "build", "-tags=" + args.tags, "-o", os.path.join(d, "runtime-bench"), "./bench/runtime"],
                       cwd=ROOT, env=env, check=True)
        # The machine may be shared: alternate the two sides and keep each one's best round, so
        # that a burst of someone else's load does not land on one side only.
        torch_res, go_res = {}, {}
        for _ in range(args.rounds):
            for name, model, shape in models:
                r = time_torch(model, shape, args.seconds)
                torch_res[name] = best(torch_res[name], r) if name in torch_res else r
            out = subprocess.run([os.path.join(d, "runtime-bench"), "-dir", d, "-models", ",".join(m[0] for m in models),
                                  "-threads", str(args.threads), "-seconds", str(args.seconds)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            for r in map(json.loads, out.splitlines()):
                go_res[r["model"]] = best(go_res[r["model"]], r) if r["model"] in go_res else r
    print("threads: %d, torch %s, go build tags: %r, best of %d rounds of %gs" % (
        args.threads, torch.__version__, args.tags, args.rounds, args.seconds))
    print()
    print("| model | batch 1 p50 built-in | batch 1 p50 PyTorch | PyTorch/built-in | batch 32 rows/s built-in "
          "| batch 32 rows/s PyTorch | PyTorch/built-in |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, _, _ in models:
        g, t = go_res[name], torch_res[name]
        print("| %s | %.0f µs | %.0f µs | %.2f | %.0f | %.0f | %.2f |" % (
            name, g["p50_us_batch1"], t["p50_us_batch1"], t["p50_us_batch1"] / g["p50_us_batch1"],
            g["rows_per_s_batch32"], t["rows_per_s_batch32"], t["rows_per_s_batch32"] / g["rows_per_s_batch32"]))


if __name__ == "__main__":
    main()
