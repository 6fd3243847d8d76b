"""The training job: resolve the base version, load the data, build or restore the model,
train, evaluate, and write the outputs. train.py parses the flags into a Config and calls run."""

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import data, outputs, store
from .archs import ARCHS

MANIFEST_FILE = "edgeloop.json"  # internal/modelrepo.ManifestFile


class JobError(Exception):
    """The job cannot run or finish: exit status 1."""


@dataclass
class Config:
    """One run; field names in errors are the flag names."""

    out: str = ""
    model: str = "fashion"
    base_version: str = ""
    dataset_manifest: str = ""
    base_model: str = ""
    base_data: List[str] = field(default_factory=lambda: [data_default()])
    samples: List[str] = field(default_factory=list)
    classes: List[str] = field(default_factory=list)
    arch: Optional[str] = None  # None: the checkpoint's, else "cnn"
    hidden: Optional[List[int]] = None  # mlp widths; None: the checkpoint's, else 256,128
    width: Optional[int] = None  # cnn/mobilenet base channels; None: the checkpoint's, else 16
    epochs: int = 5
    batch: int = 128
    lr: float = 1e-3
    seed: int = 1
    threads: int = 1
    device: str = "cpu"
    eval_split: str = "auto"
    eval_limit: int = 0
    train_limit: int = 0
    samples_repeat: int = 1
    on_mismatch: str = "error"
    bn_recalibrate: int = 2048


def data_default() -> str:
    """Fashion-MNIST's directory in Debian's dataset-fashion-mnist, the Go trainer's --data."""
    return "/usr/share/datasets/fashion-mnist"


def validate(c: Config) -> List[str]:
    """Every invalid setting, as "flag: problem" lines."""
    errs = []
    if not c.out:
        errs.append("out: required (or EDGELOOP_OUTPUT)")
    if not c.model or not all(ch.isalnum() and ch.isascii() or (i > 0 and ch in "._-") for i, ch in enumerate(c.model)):
        errs.append(f"model: must be letters, digits, '.', '_' or '-', got {c.model!r}")
    if c.arch is not None and c.arch not in ARCHS:
        errs.append(f"arch: must be one of {', '.join(ARCHS)}, got {c.arch!r}")
    if c.hidden is not None and (len(c.hidden) > 8 or any(h < 1 or h > 8192 for h in c.hidden)):
        errs.append(f"hidden: 0 to 8 widths of 1 to 8192, got {c.hidden}")
    if c.width is not None and not 1 <= c.width <= 1024:
        errs.append(f"width: must be between 1 and 1024, got {c.width}")
    if not 1 <= c.epochs <= 10000:
        errs.append(f"epochs: must be between 1 and 10000, got {c.epochs}")
    if not 1 <= c.batch <= 65536:
        errs.append(f"batch: must be between 1 and 65536, got {c.batch}")
    if not (0 < c.lr <= 1):
        errs.append(f"lr: must be in (0, 1], got {c.lr}")
    if not 0 <= c.seed < 1 << 63:
        errs.append(f"seed: must be between 0 and 2^63-1, got {c.seed}")
    if not 1 <= c.threads <= 1024:
        errs.append(f"threads: must be between 1 and 1024, got {c.threads}")
    if c.device not in ("cpu", "cuda", "auto"):
        errs.append(f"device: must be cpu, cuda or auto, got {c.device!r}")
    if c.eval_split not in ("auto", "test"):
        try:
            f = float(c.eval_split)
            if not 0 < f <= 0.5:
                raise ValueError
        except ValueError:
            errs.append(f'eval-split: must be "auto", "test" or a fraction in (0, 0.5], got {c.eval_split!r}')
    if c.eval_limit < 0:
        errs.append(f"eval-limit: must not be negative, got {c.eval_limit}")
    if c.train_limit < 0:
        errs.append(f"train-limit: must not be negative, got {c.train_limit}")
    if not 1 <= c.samples_repeat <= 100:
        errs.append(f"samples-repeat: must be between 1 and 100, got {c.samples_repeat}")
    if not 0 <= c.bn_recalibrate <= 1 << 20:
        errs.append(f"bn-recalibrate: must be between 0 and 1048576, got {c.bn_recalibrate}")
    if c.on_mismatch not in ("error", "scratch"):
        errs.append(f"on-mismatch: must be error or scratch, got {c.on_mismatch!r}")
    if len(set(c.classes)) != len(c.classes) or any(not x for x in c.classes):
        errs.append(f"classes: names must be non-empty and distinct, got {c.classes}")
    return errs


# --- the base version ------------------------------------------------------------------------


@dataclass
class Base:
    """What the job learnt of the base version: its manifest and checkpoint, when present."""

    location: str = ""
    manifest: Optional[dict] = None
    checkpoint: Optional[dict] = None


def load_base(location: str, scratch: str, log) -> Base:
    """Reads edgeloop.json and checkpoint.pt from the base version's files: a local directory
    (or file:// URI) or an s3:// prefix. Either file may be missing (a version written by
    `edgeloop train` has no checkpoint; a job's output directory has no manifest); the
    location itself must exist."""
    b = Base(location=location)
    if not location:
        return b
    paths = {}
    if store.is_remote(location):
        bucket = store.open_bucket(location)
        d = os.path.join(scratch, "base")
        for name in (MANIFEST_FILE, outputs.CHECKPOINT_FILE):
            if bucket.exists(name):
                bucket.download(name, os.path.join(d, name))
                paths[name] = os.path.join(d, name)
        if not paths:
            log.warning("base model has neither edgeloop.json nor checkpoint.pt", base_model=location)
    else:
        d = store.local_path(location)
        if not os.path.isdir(d):
            raise JobError(f"base model {location}: not a directory")
        for name in (MANIFEST_FILE, outputs.CHECKPOINT_FILE):
            if os.path.exists(os.path.join(d, name)):
                paths[name] = os.path.join(d, name)
    if MANIFEST_FILE in paths:
        try:
            with open(paths[MANIFEST_FILE], "rb") as f:
                b.manifest = json.load(f)
        except (OSError, ValueError) as e:
            raise JobError(f"base model: {MANIFEST_FILE}: {e}") from e
        if not isinstance(b.manifest, dict):
            raise JobError(f"base model: {MANIFEST_FILE} is not a JSON object")
    if outputs.CHECKPOINT_FILE in paths:
        import torch

        try:
            # weights_only: tensors and plain containers only, no pickled code.
            ck = torch.load(paths[outputs.CHECKPOINT_FILE], map_location="cpu", weights_only=True)
        except Exception as e:
            raise JobError(f"base model: {outputs.CHECKPOINT_FILE}: {e}") from e
        if not isinstance(ck, dict) or ck.get("format") != outputs.CHECKPOINT_FORMAT:
            raise JobError(f"base model: {outputs.CHECKPOINT_FILE} is not an edgeloop PyTorch checkpoint (format {outputs.CHECKPOINT_FORMAT!r})")
        if ck.get("version") != outputs.CHECKPOINT_VERSION:
            raise JobError(f"base model: {outputs.CHECKPOINT_FILE} has version {ck.get('version')!r}, this job reads {outputs.CHECKPOINT_VERSION}")
        try:
            meta = json.loads(ck["meta"])
        except (KeyError, TypeError, ValueError) as e:
            raise JobError(f"base model: {outputs.CHECKPOINT_FILE}: meta: {e}") from e
        meta["state_dict"] = ck.get("state_dict")
        b.checkpoint = meta
    else:
        log.info("base model has no checkpoint.pt: training from scratch", base_model=location)
    return b


# --- data ------------------------------------------------------------------------------------


@dataclass
class Data:
    train_x: np.ndarray
    train_y: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray
    classes: List[str]
    shape: Tuple[int, ...]
    eval_split: str
    stats: data.SampleStats
    sources: List[str]


def _shard_inputs(cfg: Config, manifest: Optional[data.Manifest]) -> Tuple[List[str], List[str], List[str]]:
    """(IDX directories, base shard files, manifest and --samples shard files)."""
    idx_dirs, base_shards = [], []
    for p in cfg.base_data:
        p = store.local_path(p)
        if data.is_idx_dir(p):
            idx_dirs.append(p)
        else:
            base_shards.extend(data.shard_files([p]))
    extra = data.shard_files(cfg.samples + (manifest.shards if manifest else []))
    return idx_dirs, base_shards, extra


def load_data(cfg: Config, base: Base, manifest: Optional[data.Manifest], log) -> Data:
    idx_dirs, base_shards, extra_shards = _shard_inputs(cfg, manifest)
    posted: Dict[str, object] = {}
    for f in (manifest.labels if manifest else []):
        data.read_label_file(f, posted)
    all_shards = base_shards + extra_shards
    ck = base.checkpoint

    # Classes: --classes, else the base version's manifest, else the data.
    if cfg.classes:
        classes = list(cfg.classes)
    elif base.manifest and base.manifest.get("classes"):
        classes = [str(c) for c in base.manifest["classes"]]
    elif ck and ck.get("classes"):
        classes = list(ck["classes"])
    elif idx_dirs:
        classes = list(data.FASHION_MNIST_CLASSES)
    else:
        classes = data.classes_from_labels(data.peek_labels(all_shards, posted))

    # The per-sample shape: the checkpoint's (a fine-tune keeps its parent's input), else
    # Fashion-MNIST's, else the first sample's.
    idx_train = [data.load_idx(d, "train", cfg.train_limit) for d in idx_dirs]
    if ck and ck.get("input_shape"):
        shape = tuple(int(s) for s in ck["input_shape"])
    elif idx_train:
        shape = tuple(idx_train[0][0].shape[1:])
    else:
        shape = data.first_input_shape(all_shards)
        if shape is None:
            raise JobError("no data: give --base-data or a dataset manifest with samples")

    xs, ys = [], []
    for x, y in idx_train:
        if tuple(x.shape[1:]) != shape:
            raise JobError(f"base data: images of shape {list(x.shape[1:])}, the model takes {list(shape)}")
        if y.size and y.max() >= len(classes):
            raise JobError(f"base data: label {int(y.max())} for {len(classes)} classes")
        xs.append(x), ys.append(y)
    stats = data.SampleStats()
    seen: set = set()
    # Base shards and collected shards follow the same rules, the held-out split included,
    # so a captured sample copied into the base data stays the gate's.
    tr, held = data.load_samples(all_shards, posted, classes, shape, stats, seen, log)
    base_n = sum(len(y) for y in ys)
    for _ in range(cfg.samples_repeat):
        xs.append(tr.x), ys.append(tr.y)
    train_x = np.concatenate(xs) if xs else np.zeros((0,) + shape, np.float32)
    train_y = np.concatenate(ys) if ys else np.zeros((0,), np.int64)
    if all_shards:
        log.info("samples read", shards=stats.shards, labelled=stats.labelled, held_out=stats.held_out,
                 repeat=cfg.samples_repeat, unlabelled=stats.unlabelled, rejected=stats.rejected,
                 duplicates=stats.duplicates, base_images=base_n)

    split = cfg.eval_split
    if split == "auto":
        split = "test" if idx_dirs else "0.1"
    if split == "test":
        if not idx_dirs:
            raise JobError("eval-split test needs a Fashion-MNIST directory in --base-data; use a fraction such as 0.1")
        eval_x, eval_y = data.load_idx(idx_dirs[0], "t10k", cfg.eval_limit)
    else:
        frac = float(split)
        rng = np.random.default_rng([cfg.seed, 0x65646765])  # the split's own stream
        perm = rng.permutation(len(train_y))
        k = max(1, int(frac * len(train_y)))
        eval_x, eval_y = train_x[perm[:k]], train_y[perm[:k]]
        train_x, train_y = train_x[perm[k:]], train_y[perm[k:]]
    if cfg.eval_limit:
        eval_x, eval_y = eval_x[:cfg.eval_limit], eval_y[:cfg.eval_limit]
    if len(train_y) == 0 or len(eval_y) == 0:
        raise JobError(f"{len(train_y)} training and {len(eval_y)} evaluation images: need some of each")
    sources = [store.file_uri(d) for d in idx_dirs]
    remote = manifest.sources if manifest else {}
    sources += [remote.get(f) or store.file_uri(f) for f in all_shards]
    return Data(np.ascontiguousarray(train_x), train_y, np.ascontiguousarray(eval_x), eval_y,
                classes, shape, split, stats, sources)


# --- the model ---------------------------------------------------------------------------------


def resolve_arch(cfg: Config, base: Base, d: Data, log):
    """The architecture and its settings, and the checkpoint to start from (None: scratch).
    Settings not given on the command line come from the checkpoint; a checkpoint that does
    not fit what was asked is an error, or with --on-mismatch scratch a warning."""
    ck = base.checkpoint
    ck_arch = ck.get("arch") if ck else None
    ck_cfg = (ck.get("arch_config") or {}) if ck else {}
    arch = cfg.arch or ck_arch or "cnn"
    hidden = cfg.hidden if cfg.hidden is not None else ck_cfg.get("hidden", [256, 128])
    width = cfg.width if cfg.width is not None else ck_cfg.get("width", 16)
    if arch != "mlp":
        hidden = []
    if not ck:
        return arch, list(hidden), int(width), None
    problems = []
    if ck_arch != arch:
        problems.append(f"arch {ck_arch!r}, asked for {arch!r}")
    if arch == "mlp" and list(ck_cfg.get("hidden", [])) != list(hidden):
        problems.append(f"hidden {ck_cfg.get('hidden')}, asked for {hidden}")
    if arch != "mlp" and int(ck_cfg.get("width", 16)) != int(width):
        problems.append(f"width {ck_cfg.get('width')}, asked for {width}")
    if list(ck.get("classes") or []) != list(d.classes):
        problems.append(f"classes {ck.get('classes')}, the run has {d.classes}")
    if tuple(ck.get("input_shape") or ()) != tuple(d.shape):
        problems.append(f"input shape {ck.get('input_shape')}, the data has {list(d.shape)}")
    if problems:
        msg = f"the base version's checkpoint does not fit: {'; '.join(problems)}"
        if cfg.on_mismatch == "error":
            raise JobError(msg + " (pass --on-mismatch scratch to train from scratch instead)")
        log.warning("training from scratch: " + msg, base_model=base.location)
        return arch, list(hidden), int(width), None
    return arch, list(hidden), int(width), ck


def predict(model, x: np.ndarray, device, batch: int = 1000) -> np.ndarray:
    """The model's logits for x, in evaluation mode, batch images at a time."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch]).to(device)).float().cpu().numpy())
    return np.concatenate(out)


def recalibrate_bn(model, x, n: int, seed: int, device, batch: int = 256) -> None:
    """Re-estimates BatchNorm's running statistics as the plain average over n training
    images (a fixed sample of seed) with the weights as they are now. Training keeps an
    exponential average over the last few dozen steps, in which the weights moved: after a
    short run (a fine-tune on a few hundred samples) the evaluation-mode model then scores far
    below the training-mode one, MobileNet's depthwise layers most."""
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or n == 0:
        return
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 1))[:n]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad():
        for i in range(0, len(idx), batch):
            part = idx[i:i + batch]
            if len(part) > 1:  # BatchNorm needs two values per channel
                model(x[part].to(device))
    for m, mom in zip(bns, saved):
        m.momentum = mom


def set_determinism(cfg: Config):
    """Seeds and deterministic kernels; returns the device."""
    import torch

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    dev = cfg.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        if not torch.cuda.is_available():
            raise JobError("device cuda: no CUDA device available")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # Some CUDA backward kernels (max pooling, adaptive pooling) have no deterministic
        # version: warn rather than refuse; CPU runs are bit for bit reproducible.
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)
    return torch.device(dev)


def train(cfg: Config, d: Data, arch: str, hidden: List[int], width: int, ck: Optional[dict], device, log):
    """Trains (or fine-tunes from ck) and evaluates after each epoch; returns the model, the
    last evaluation, the history and the training time in seconds."""
    import torch
    from torch import nn

    from .models import build

    model = build(arch, d.shape, len(d.classes), hidden, width)
    if ck is not None:
        try:
            model.load_state_dict(ck["state_dict"])
        except (RuntimeError, KeyError) as e:
            raise JobError(f"base model: checkpoint.pt: {e}") from e
    model.to(device)
    x = torch.from_numpy(d.train_x)
    y = torch.from_numpy(d.train_y)
    n = len(y)
    steps_per_epoch = math.ceil(n / cfg.batch)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    # The learning rate decays from lr to 0 along a cosine over the run, per step (as the Go
    # trainer's): a fine-tune starts at the full rate, so pass a smaller --lr to stay closer
    # to the parent.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    start = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum, right, seen = 0.0, 0, 0
        for i in range(0, n, cfg.batch):
            idx = perm[i:i + cfg.batch]
            xb, yb = x[idx].to(device), y[idx].to(device)
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * len(idx)
            right += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        recalibrate_bn(model, x, cfg.bn_recalibrate, cfg.seed, device)
        logits = predict(model, d.eval_x, device)
        ev = outputs.evaluation(logits, d.eval_y, d.classes)
        h = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": right / seen,
             "eval_loss": ev["loss"], "eval_accuracy": ev["accuracy"],
             "elapsed_seconds": round(time.monotonic() - start, 3)}
        history.append(h)
        log.info("epoch done", epoch=epoch, of=cfg.epochs, train_loss=round(h["train_loss"], 4),
                 train_accuracy=round(h["train_accuracy"], 4), eval_loss=round(h["eval_loss"], 4),
                 eval_accuracy=round(h["eval_accuracy"], 4), elapsed=f"{h['elapsed_seconds']:.1f}s")
    return model, ev, history, time.monotonic() - start


# --- the whole job -----------------------------------------------------------------------------


def run(cfg: Config, log) -> dict:
    """Runs the job and returns metrics.json's content. Outputs go to cfg.out: a local
    directory (model.onnx written before metrics.json, each renamed into place) or an s3://
    prefix (metrics.json and checkpoint.pt uploaded first, model.onnx last). Data and
    settings are checked before torch is imported, so that a bad job fails in a second."""
    scratch = tempfile.mkdtemp(prefix="edgeloop-pytorch-")
    try:
        base = load_base(cfg.base_model, scratch, log)
        manifest = None
        if cfg.dataset_manifest:
            if store.is_remote(cfg.dataset_manifest):
                manifest = data.fetch_manifest(cfg.dataset_manifest, os.path.join(scratch, "data"), log)
            else:
                manifest = data.read_local_manifest(store.local_path(cfg.dataset_manifest))
        d = load_data(cfg, base, manifest, log)
        device = set_determinism(cfg)
        arch, hidden, width, ck = resolve_arch(cfg, base, d, log)
        log.info("training", model=cfg.model, arch=arch, input_shape=list(d.shape), classes=len(d.classes),
                 train_images=len(d.train_y), eval_images=len(d.eval_y), eval_split=d.eval_split,
                 epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr, seed=cfg.seed, threads=cfg.threads,
                 device=str(device), fine_tune=ck is not None)
        model, ev, history, duration = train(cfg, d, arch, hidden, width, ck, device, log)
        import torch

        meta = {"edgeloop.model": cfg.model, "edgeloop.arch": arch,
                "edgeloop.preprocessing": f"{'x'.join(str(s) for s in d.shape)} float32 NCHW; Fashion-MNIST and uint8 samples: grey levels divided by 255"}
        if cfg.base_version:
            meta["edgeloop.base_version"] = cfg.base_version
        onnx_bytes = outputs.export_onnx(model, d.shape, d.classes, meta)
        settings = {"epochs": cfg.epochs, "batch_size": cfg.batch, "learning_rate": cfg.lr, "seed": cfg.seed,
                    "threads": cfg.threads, "eval_split": d.eval_split, "samples_repeat": cfg.samples_repeat,
                    "train_limit": cfg.train_limit, "eval_limit": cfg.eval_limit}
        # Everything but the weights is one JSON string: torch 1.13's weights_only loader,
        # which a fine-tune uses so that a checkpoint cannot run code, refuses pickled floats.
        checkpoint = {
            "format": outputs.CHECKPOINT_FORMAT, "version": outputs.CHECKPOINT_VERSION,
            "meta": json.dumps({
                "arch": arch, "arch_config": {"hidden": hidden, "width": width},
                "classes": list(d.classes), "input_shape": list(d.shape),
                "config": settings, "model": cfg.model, "base_version": cfg.base_version,
                "torch_version": torch.__version__, "accuracy": ev["accuracy"], "loss": ev["loss"],
            }),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        }
        last = history[-1]
        metrics = {"model": cfg.model}
        if cfg.base_version:
            metrics["base_version"] = cfg.base_version
        metrics.update(ev)
        metrics.update({
            "classes": list(d.classes), "eval_split": d.eval_split,
            "train_size": int(len(d.train_y)), "eval_size": int(len(d.eval_y)),
            "samples": d.stats.to_json(), "datasets": d.sources,
            "epochs": cfg.epochs, "seed": cfg.seed, "hidden": hidden, "batch_size": cfg.batch,
            "learning_rate": cfg.lr, "train_loss": last["train_loss"], "train_accuracy": last["train_accuracy"],
            "duration_seconds": round(duration, 3), "history": history,
            # Beyond the Go trainer's keys: what only this job has.
            "arch": arch, "width": width if arch != "mlp" else 0, "input_shape": list(d.shape),
            "fine_tuned_from": base.location if ck is not None else "", "device": str(device),
            "threads": cfg.threads, "rejected_by_reason": dict(sorted(d.stats.rejected_by_reason.items())),
        })
        write_outputs(cfg.out, onnx_bytes, checkpoint, metrics, scratch, log)
        return metrics
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_outputs(out: str, onnx_bytes: bytes, checkpoint: dict, metrics: dict, scratch: str, log) -> None:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    mj = (json.dumps(metrics, indent=2, ensure_ascii=False) + "\n").encode()
    remote = store.is_remote(out)
    d = os.path.join(scratch, "output") if remote else store.local_path(out)
    os.makedirs(d, exist_ok=True)
    # Locally, metrics.json comes last: a directory holding it holds a complete result.
    outputs.write_atomic(os.path.join(d, outputs.CHECKPOINT_FILE), buf.getvalue())
    outputs.write_atomic(os.path.join(d, outputs.MODEL_FILE), onnx_bytes)
    outputs.write_atomic(os.path.join(d, outputs.METRICS_FILE), mj)
    if remote:
        bucket = store.open_bucket(out)
        # Remotely, model.onnx comes last: a model under the prefix means a finished job.
        for name in (outputs.METRICS_FILE, outputs.CHECKPOINT_FILE, outputs.MODEL_FILE):
            bucket.upload(os.path.join(d, name), name)
        log.info("outputs uploaded", output=out)
