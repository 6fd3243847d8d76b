#!/usr/bin/env python3
"""edgeloop's reference PyTorch training job (docs/trainer-pytorch.md).

It follows the training job contract (docs/job-backends.md): the EDGELOOP_* environment gives
the defaults of the flags below, flags win; it writes model.onnx, checkpoint.pt and metrics.json
under the output prefix, and exits 0 on success, 1 when the job fails, 2 for invalid flags.
"""

import argparse
import json
import os
import signal
import sys

sys.dont_write_bytecode = True  # the job's directory may be read-only (an image) or a checkout

from edgeloop_pytorch import data, job, outputs, store  # noqa: E402
from edgeloop_pytorch.log import LEVELS, Logger  # noqa: E402
from edgeloop_pytorch.archs import ARCHS  # noqa: E402

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

ENV_MODEL = "EDGELOOP_MODEL"
ENV_BASE_VERSION = "EDGELOOP_BASE_VERSION"
ENV_DATASET_MANIFEST = "EDGELOOP_DATASET_MANIFEST"
ENV_OUTPUT = "EDGELOOP_OUTPUT"
ENV_BASE_MODEL = "EDGELOOP_BASE_MODEL"


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def int_list(s: str):
    try:
        return [int(v) for v in s.split(",") if v.strip()] if s.strip() else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a comma-separated list of integers")


def class_list(s: str):
    """A JSON list, or names separated by commas."""
    if s.lstrip().startswith("["):
        try:
            v = json.loads(s)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"not a JSON list: {e}")
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise argparse.ArgumentTypeError("want a JSON list of strings")
        return v
    return [x.strip() for x in s.split(",") if x.strip()]


def parse(argv, env):
    d = job.Config()
    p = Parser(prog="train.py", allow_abbrev=False, description="edgeloop's PyTorch training job: trains a CNN (or MLP) classifier "
               "and writes model.onnx, checkpoint.pt and metrics.json under the output prefix. Docs: docs/trainer-pytorch.md.")
    p.add_argument("--out", default=env.get(ENV_OUTPUT, ""), help=f"output directory or s3:// prefix (env {ENV_OUTPUT}; required)")
    p.add_argument("--model", default=env.get(ENV_MODEL) or d.model, help=f"model name (env {ENV_MODEL}; default fashion)")
    p.add_argument("--base-version", default=env.get(ENV_BASE_VERSION, ""), help=f"the version retrained, recorded in the outputs (env {ENV_BASE_VERSION})")
    p.add_argument("--dataset-manifest", default=env.get(ENV_DATASET_MANIFEST, ""), help=f"dataset manifest: a local path or an s3:// URL (env {ENV_DATASET_MANIFEST})")
    p.add_argument("--base-model", default=env.get(ENV_BASE_MODEL, ""), help=f"the base version's files, a directory or s3:// prefix; fine-tunes from its checkpoint.pt (env {ENV_BASE_MODEL})")
    p.add_argument("--base-data", action="append", default=None, metavar="PATH",
                   help=f"base data set: a Fashion-MNIST IDX directory or shard files/directories; repeatable; 'none' for none (default {d.base_data[0]})")
    p.add_argument("--samples", action="append", default=[], metavar="PATH", help="more shard files or directories (repeatable)")
    p.add_argument("--classes", type=class_list, default=[], help="class names in label order, comma-separated or a JSON list (default: the base version's, else the data's)")
    p.add_argument("--arch", choices=ARCHS, default=None, help="cnn, mobilenet or mlp (default: the checkpoint's, else cnn)")
    p.add_argument("--hidden", type=int_list, default=None, help="mlp hidden widths, comma-separated (default 256,128)")
    p.add_argument("--width", type=int, default=None, help="cnn/mobilenet channels of the first layer (default 16)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training data (default 5)")
    p.add_argument("--batch", type=int, default=d.batch, help="images per optimiser step (default 128)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam's initial learning rate, decayed along a cosine to 0")
    p.add_argument("--seed", type=int, default=d.seed, help="initialisation, shuffling and splits (default 1)")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads (default 1); the same thread count gives the same weights, bit for bit")
    p.add_argument("--device", default=d.device, help="cpu, cuda or auto (default cpu)")
    p.add_argument("--eval-split", default=d.eval_split, help='"test" (Fashion-MNIST test set), a fraction such as 0.1, or "auto" (default)')
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N images of the split only (0: all)")
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N Fashion-MNIST training images (0: all)")
    p.add_argument("--samples-repeat", type=int, default=1, help="each labelled sample joins the training data N times (1-100)")
    p.add_argument("--bn-recalibrate", type=int, default=d.bn_recalibrate, metavar="N",
                   help="re-estimate BatchNorm statistics on N training images after each epoch (0: off; default 2048)")
    p.add_argument("--on-mismatch", default=d.on_mismatch, help="a checkpoint whose arch, classes or input shape differ: error (default) or scratch")
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json"))
    p.add_argument("--log.level", dest="log_level", default="info", choices=sorted(LEVELS))
    a = p.parse_args(argv)
    base_data = a.base_data if a.base_data is not None else d.base_data
    base_data = [] if base_data == ["none"] else base_data
    cfg = job.Config(out=a.out, model=a.model, base_version=a.base_version, dataset_manifest=a.dataset_manifest,
                     base_model=a.base_model, base_data=base_data, samples=a.samples, classes=a.classes,
                     arch=a.arch, hidden=a.hidden, width=a.width, epochs=a.epochs, batch=a.batch, lr=a.lr,
                     seed=a.seed, threads=a.threads, device=a.device, eval_split=a.eval_split,
                     eval_limit=a.eval_limit, train_limit=a.train_limit, samples_repeat=a.samples_repeat,
                     on_mismatch=a.on_mismatch, bn_recalibrate=a.bn_recalibrate)
    errs = job.validate(cfg)
    if errs:
        raise UsageError("invalid settings:\n" + "\n".join(errs))
    return cfg, a


def main(argv=None) -> int:
    try:
        cfg, a = parse(sys.argv[1:] if argv is None else argv, os.environ)
    except UsageError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return EXIT_USAGE
    log = Logger(a.log_format, a.log_level, component="train")

    def on_signal(signum, _frame):
        # A cancelled job (the controller's Cancel, a pod's deletion) fails with status 1, as
        # the Go trainer does on SIGINT/SIGTERM, instead of dying by the signal; outputs are
        # written through temporary names, so none is left half-written.
        raise job.JobError(f"cancelled by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        m = job.run(cfg, log)
    except (job.JobError, data.DataError, store.StoreError, ValueError) as e:
        log.error("training failed", err=str(e))
        return EXIT_FAILURE
    except Exception as e:  # an unexpected failure is still a failed job, with its cause logged
        log.error("training failed", err=f"{type(e).__name__}: {e}")
        return EXIT_FAILURE
    print(f"edgeloop pytorch job: accuracy {m['accuracy']:.4f} on {m['eval_size']} evaluation images "
          f"(eval-split {m['eval_split']}) after {m['epochs']} epochs of {m['arch']} in {m['duration_seconds']:.1f}s"
          f"{' (fine-tuned)' if m['fine_tuned_from'] else ''}; wrote {outputs.MODEL_FILE}, {outputs.CHECKPOINT_FILE} "
          f"and {outputs.METRICS_FILE} in {cfg.out}", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
