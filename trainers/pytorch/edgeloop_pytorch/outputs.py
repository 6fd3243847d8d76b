"""What the job writes: model.onnx (opset 13, the Go trainer's names and metadata),
metrics.json (trainers/go Metrics), checkpoint.pt (what a later job fine-tunes from)."""

import io
import json
import math
import os
import tempfile
from typing import Dict, List, Sequence

import numpy as np

MODEL_FILE = "model.onnx"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.pt"

INPUT_NAME = "input"
LOGITS_NAME = "logits"
PROBABILITIES_NAME = "probabilities"
EMBEDDING_NAME = "embedding"
# The metadata key that names the embedding output (modelrepo.MetadataEmbeddingOutput).
METADATA_EMBEDDING_OUTPUT = "edgeloop.embedding_output"
BATCH_PARAM = "batch"
OPSET = 13

HISTOGRAM_BINS = 10
SCORERS = ("max_softmax", "margin", "entropy")

CHECKPOINT_FORMAT = "edgeloop-pytorch-checkpoint"
CHECKPOINT_VERSION = 1


def write_atomic(path: str, data: bytes) -> None:
    """Writes data to a temporary file beside path, syncs it, and renames it into place, so a
    crash never leaves a half-written file under the final name."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def classes_json(classes: Sequence[str]) -> str:
    """The class names as Go's json.Marshal writes a []string: compact, UTF-8 kept, and <, >,
    & escaped."""
    s = json.dumps(list(classes), separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def export_onnx(model, shape: Sequence[int], classes: Sequence[str], metadata: Dict[str, str]) -> bytes:
    """Exports model (in eval mode, on the CPU) as ONNX opset 13: input "input" FLOAT
    [batch, C, H, W], outputs "logits" and "probabilities" FLOAT [batch, classes] and
    "embedding" FLOAT [batch, features] (what the last Linear classifies), the class names in
    metadata_props "classes" as a JSON list, the embedding output's name under
    "edgeloop.embedding_output", plus metadata."""
    import onnx  # Debian python3-onnx; torch.onnx.export needs it too
    import torch

    from .models import WithProbabilities

    model = model.to("cpu").eval()
    dummy = torch.zeros((1,) + tuple(shape), dtype=torch.float32)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            WithProbabilities(model), dummy, buf, opset_version=OPSET, do_constant_folding=True,
            input_names=[INPUT_NAME], output_names=[LOGITS_NAME, PROBABILITIES_NAME, EMBEDDING_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_PARAM}, LOGITS_NAME: {0: BATCH_PARAM}, PROBABILITIES_NAME: {0: BATCH_PARAM},
                          EMBEDDING_NAME: {0: BATCH_PARAM}},
            training=torch.onnx.TrainingMode.EVAL)
    m = onnx.load_from_string(buf.getvalue())
    m.producer_name = "edgeloop"
    m.producer_version = f"pytorch-job (torch {torch.__version__})"
    m.graph.name = "edgeloop_" + metadata.get("edgeloop.arch", "model")
    del m.metadata_props[:]
    props = {"classes": classes_json(classes), METADATA_EMBEDDING_OUTPUT: EMBEDDING_NAME}
    props.update(metadata)
    for k in sorted(props):
        p = m.metadata_props.add()
        p.key, p.value = k, props[k]
    onnx.checker.check_model(m)
    return m.SerializeToString()


# --- evaluation, scored as the exporter scores (internal/classify) ----------------------------


def scores(logits: np.ndarray) -> Dict[str, np.ndarray]:
    """Per row of logits: the predicted class and the confidences of the exporter's scorers
    (internal/classify.Score on logits), in float64: max_softmax p(1), margin p(1) - p(2),
    entropy 1 - H(p)/ln K, each clamped to [0, 1]."""
    z = logits.astype(np.float64)
    k = z.shape[1]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    top = np.argmax(logits, axis=1)  # the first of equal maxima, as Go's strict comparison
    srt = np.sort(p, axis=1)
    p1 = srt[:, -1]
    p2 = srt[:, -2] if k > 1 else np.zeros_like(p1)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0)
    h = -plogp.sum(axis=1)
    ent = 1 - h / math.log(k) if k > 1 else np.ones_like(p1)
    return {"class": top, "max_softmax": np.clip(p1, 0, 1), "margin": np.clip(p1 - p2, 0, 1),
            "entropy": np.clip(ent, 0, 1)}


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """−ln softmax(z)[label] per row, stably in float64 (trainers/go CrossEntropy)."""
    z = logits.astype(np.float64)
    m = z.max(axis=1)
    lse = np.log(np.exp(z - m[:, None]).sum(axis=1)) + m
    return lse - z[np.arange(len(labels)), labels]


def histogram(conf: np.ndarray) -> List[float]:
    """Shares of conf in HISTOGRAM_BINS equal bins over [0, 1], bin floor(c*10), c = 1 in the
    last (trainers/go HistogramBin)."""
    bins = np.minimum((conf * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    counts = np.bincount(bins, minlength=HISTOGRAM_BINS)
    return [float(c) / len(conf) for c in counts]


def evaluation(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict:
    """metrics.json's evaluation part, from the logits of the evaluation split."""
    s = scores(logits)
    right = s["class"] == labels
    per_class = {}
    for c, name in enumerate(classes):
        n = int((labels == c).sum())
        if n:  # a class absent from a small split has no accuracy
            per_class[name] = float(right[labels == c].sum()) / n
    hists = {sc: histogram(s[sc]) for sc in SCORERS}
    return {
        "accuracy": float(right.mean()),
        "per_class_accuracy": per_class,
        "loss": float(cross_entropy(logits, labels).mean()),
        "confidence_scorer": "max_softmax",
        "confidence_histogram": hists["max_softmax"],
        "confidence_histograms": hists,
        "mean_confidence": float(s["max_softmax"].mean()),
    }
