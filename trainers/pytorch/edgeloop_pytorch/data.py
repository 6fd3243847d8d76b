"""Training data: Fashion-MNIST IDX files, WebDataset shards of captured samples, label files,
dataset manifests, and the held-out split.

The rules are those of the Go side (trainers/go/samples.go, internal/dataset, docs/wire-format.md)
so that a sample is used, refused or held out the same way by every edgeloop trainer and by the
evaluation gate:

- a shard is a tar (optionally gzipped) of <key>.json and <key>.input.npy files grouped by key
  (the file name up to its first dot); other members are ignored;
- a sample's label is the "label" of its JSON, or of a label file's {"key", "label"} line, which
  wins; a class index (7, "7") or a class name ("Sneaker"); null, "" or no label: unlabelled;
- the input is a float32, float64 or uint8 .npy array (uint8 divided by 255) of finite values
  whose shape fits the model's after dropping leading 1-dimensions;
- a sample whose content key is on the held-out side (held_out) is never trained on.
"""

import ast
import gzip
import hashlib
import json
import os
import re
import struct
import tarfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import store

# Fashion-MNIST's class names in label order (internal/fmnist.ClassNames).
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# MAX_MEMBER bounds one file inside a shard: internal/dataset.MaxMemberBytes, which is
# sample.MaxInputBytes, the largest input a node may send.
MAX_MEMBER = 8 << 20

# HOLDOUT_BUCKETS is internal/dataset.HoldoutBuckets: bucket 0 of 10 is the gate's.
HOLDOUT_BUCKETS = 10

MAX_REJECT_LOGS = 5

_HEX = set("0123456789abcdef")
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


class DataError(Exception):
    """Unreadable data: a shard, label file, manifest or IDX file that cannot be used."""


# --- the held-out split, bit for bit internal/dataset's ------------------------------------


def content_key(values: np.ndarray) -> str:
    """internal/dataset.ContentKey: the lowercase hex of the first 16 bytes of the SHA-256 of
    the decoded values as little-endian float32, in row-major order."""
    b = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return hashlib.sha256(b).hexdigest()[:32]


def held_out(key: str) -> bool:
    """internal/dataset.HeldOut: a key whose first 16 characters are lowercase hex is read as a
    big-endian 64-bit integer; any other key is hashed with SHA-256 and its first 8 bytes read
    so. The sample is held out (the evaluation gate's) when that integer is 0 modulo 10."""
    if len(key) >= 16 and all(c in _HEX for c in key[:16]):
        v = int(key[:16], 16)
    else:
        v = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return v % HOLDOUT_BUCKETS == 0


# --- inputs --------------------------------------------------------------------------------


class Refused(Exception):
    """A sample that cannot be used; reason is one of internal/dataset's refusal reasons."""

    def __init__(self, reason: str, msg: str):
        super().__init__(f"{reason}: {msg}")
        self.reason = reason


def read_npy(data: bytes) -> Tuple[np.ndarray, str]:
    """Reads a .npy file of float32, float64 or uint8 values (any byte order) with numpy,
    refusing what internal/npy refuses: other dtypes, other header keys, Fortran order over two
    or more dims of more than one, truncated data or data after the array. Returns the array
    as float32 values and its descr."""
    if len(data) < 10 or data[:6] != b"\x93NUMPY":
        raise Refused("npy", "not a .npy file")
    major = data[6]
    if major == 1:
        hlen, start = struct.unpack("<H", data[8:10])[0], 10
    elif major in (2, 3):
        if len(data) < 12:
            raise Refused("npy", "truncated header")
        hlen, start = struct.unpack("<I", data[8:12])[0], 12
    else:
        raise Refused("npy", f"format version {major} not supported")
    try:
        # numpy's own reader parses the header the same way (a Python literal).
        header = ast.literal_eval(data[start:start + hlen].decode("utf-8" if major == 3 else "latin1"))
        if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
            raise ValueError("want exactly the keys descr, fortran_order and shape")
        descr, fortran, shape = header["descr"], header["fortran_order"], tuple(header["shape"])
    except Exception as e:
        raise Refused("npy", f"header: {e}") from e
    if not isinstance(descr, str) or descr[1:] not in ("f4", "f8", "u1") or descr[:1] not in "<>|":
        raise Refused("dtype", f"dtype {descr!r} not supported (want float32, float64 or uint8)")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise Refused("npy", f"shape {shape!r}")
    if fortran and sum(1 for d in shape if d > 1) >= 2:
        raise Refused("npy", "fortran_order arrays are not supported")
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    body = data[start + hlen:]
    dt = np.dtype(descr)
    if len(body) != n * dt.itemsize:  # internal/npy refuses data after the array too
        raise Refused("npy", f"{len(body)} bytes of data for shape {shape} of {descr}, want {n * dt.itemsize}")
    a = np.frombuffer(body, dtype=dt, count=n).astype(np.float32).reshape(shape)
    return a, descr


def strip_ones(shape: Sequence[int]) -> Tuple[int, ...]:
    """The shape without its leading 1-dimensions."""
    s = tuple(int(d) for d in shape)
    while s and s[0] == 1:
        s = s[1:]
    return s


def shape_matches(got: Sequence[int], want: Sequence[int]) -> bool:
    """internal/dataset.ShapeMatches: equal after dropping leading 1-dimensions, so [1,1,28,28]
    and [28,28] fit [1,28,28] and [784] does not."""
    return strip_ones(got) == strip_ones(want)


def decode_input(data: Optional[bytes], shape: Sequence[int]) -> np.ndarray:
    """internal/dataset.DecodeInput: the sample's values as float32 of the given per-sample
    shape; uint8 grey levels divided by 255. Raises Refused."""
    if not data:
        raise Refused("npy", "no input.npy")
    a, descr = read_npy(data)
    if not shape_matches(a.shape, shape):
        raise Refused("shape", f"input of shape {list(a.shape)} does not fit {list(shape)}")
    if not np.all(np.isfinite(a)):
        i = int(np.argmin(np.isfinite(a).reshape(-1)))
        raise Refused("nonfinite", f"input value {i} is {a.reshape(-1)[i]}")
    if descr == "|u1":
        a = a / np.float32(255)
    return np.ascontiguousarray(a.reshape(shape), dtype=np.float32)


def sample_shape(data: bytes) -> Tuple[int, ...]:
    """The per-sample (C,H,W) shape an input suggests when nothing else names one: its shape
    without leading 1-dimensions, a channel of 1 added to a 2-D image."""
    a, _ = read_npy(data)
    s = strip_ones(a.shape)
    if len(s) == 2:
        s = (1,) + s
    if not s:
        raise Refused("shape", f"input of shape {list(a.shape)} holds one value")
    return s


# --- labels ----------------------------------------------------------------------------------


def parse_label(raw, classes: Sequence[str]) -> int:
    """trainers/go parseLabel: a class index (7, 7.0, "7") or a class name ("Sneaker")."""
    if isinstance(raw, bool):
        pass
    elif isinstance(raw, (int, float)):
        if float(raw).is_integer() and 0 <= raw < len(classes):
            return int(raw)
    elif isinstance(raw, str):
        if raw in classes:
            return classes.index(raw)
        if _INT_RE.match(raw):
            i = int(raw)
            if 0 <= i < len(classes):
                return i
    raise Refused("label", f"label {json.dumps(raw)} names no class (want an index below {len(classes)} or a class name)")


def no_label(raw) -> bool:
    """null, "" or absent: not labelled yet."""
    return raw is None or raw == ""


def read_label_file(name: str, labels: Dict[str, object]) -> None:
    """Adds the labels of a JSONL file of {"key": ..., "label": ...} lines; later lines win."""
    try:
        with open(name, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise DataError(f"{name}:{n}: want a JSON object with a key and a label ({e})") from e
                if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not obj["key"]:
                    raise DataError(f"{name}:{n}: want a JSON object with a key and a label")
                labels[obj["key"]] = obj.get("label")
    except OSError as e:
        raise DataError(f"label file: {e}") from e


# --- shards ----------------------------------------------------------------------------------


@dataclass
class RawSample:
    """One WebDataset sample as read from a shard: its files by extension."""

    key: str
    meta: Optional[bytes] = None
    npy: Optional[bytes] = None


def shard_files(paths: Sequence[str]) -> List[str]:
    """Expands directories into their .tar, .tar.gz and .tgz files, in lexical order, so a run
    is reproducible."""
    out = []
    for p in paths:
        if not os.path.exists(p):
            raise DataError(f"{p}: no such file or directory")
        if not os.path.isdir(p):
            out.append(p)
            continue
        found = []
        for root, dirs, files in os.walk(p):
            dirs.sort()
            for f in files:
                if f.endswith((".tar", ".tar.gz", ".tgz")):
                    found.append(os.path.join(root, f))
        out.extend(sorted(found))
    return out


def read_shard(name: str) -> List[RawSample]:
    """A shard's samples in the order their first file appears."""
    by_key: Dict[str, RawSample] = {}
    order: List[RawSample] = []
    try:
        with tarfile.open(name, mode="r:*") as tf:
            for m in tf:
                if not m.isreg():
                    continue
                d, base = os.path.split(os.path.normpath(m.name))
                dot = base.find(".")
                if dot <= 0:
                    continue
                ext = base[dot + 1:]
                if ext not in ("json", "input.npy"):
                    continue  # encoded inputs and extra files are not for this job
                group = (d, base[:dot])
                s = by_key.get(group)
                if s is None:
                    # Keys are content-derived IDs; the directory is not part of one.
                    s = by_key[group] = RawSample(key=base[:dot])
                    order.append(s)
                if m.size > MAX_MEMBER:
                    raise DataError(f"{m.name}: {m.size} bytes, more than the {MAX_MEMBER} a sample file may have")
                f = tf.extractfile(m)
                data = f.read() if f else b""
                if ext == "json":
                    s.meta = data
                else:
                    s.npy = data
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{name}: {e}") from e
    return order


@dataclass
class SampleStats:
    """trainers/go SampleStats, the "samples" of metrics.json."""

    shards: int = 0
    labelled: int = 0
    unlabelled: int = 0
    rejected: int = 0
    duplicates: int = 0
    held_out: int = 0
    rejected_by_reason: Dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"shards": self.shards, "labelled": self.labelled, "unlabelled": self.unlabelled,
             "rejected": self.rejected, "duplicates": self.duplicates}
        if self.held_out:
            d["held_out"] = self.held_out
        return d


@dataclass
class Labelled:
    """Labelled samples read from shards: inputs [N, *shape] and labels [N]."""

    x: np.ndarray
    y: np.ndarray
    keys: List[str]


def raw_label(s: RawSample, posted: Dict[str, object]):
    """The sample's raw label (a posted label wins) or None; raises Refused on bad metadata."""
    if s.key in posted:
        return posted[s.key]
    if s.meta is None:
        raise Refused("meta", "no .json metadata")
    try:
        meta = json.loads(s.meta)
    except ValueError as e:
        raise Refused("meta", f"metadata: {e}") from e
    if not isinstance(meta, dict):
        raise Refused("meta", "metadata is not a JSON object")
    return meta.get("label")


def load_samples(files: Sequence[str], posted: Dict[str, object], classes: Sequence[str],
                 shape: Sequence[int], stats: SampleStats, seen: set, log) -> Tuple[Labelled, Labelled]:
    """Reads the labelled samples of shard files, split by held_out into (train, held-out), as
    internal/dataset.ReadLabelled and Split do. seen holds the content keys already read
    (across calls): the same image again, under any sample key, is a duplicate. Unusable
    samples are counted by reason and the first few logged."""
    tx, ty, tk, hx, hy, hk = [], [], [], [], [], []
    rejects = 0
    for f in files:
        samples = read_shard(f)
        stats.shards += 1
        for s in samples:
            try:
                raw = raw_label(s, posted)
                if no_label(raw):
                    stats.unlabelled += 1
                    continue
                label = parse_label(raw, classes)
                x = decode_input(s.npy, shape)
            except Refused as e:
                stats.rejected += 1
                stats.rejected_by_reason[e.reason] = stats.rejected_by_reason.get(e.reason, 0) + 1
                rejects += 1
                if rejects <= MAX_REJECT_LOGS:
                    log.warning("sample skipped", shard=f, key=s.key, err=str(e))
                continue
            ck = content_key(x)
            if ck in seen:  # the same image captured twice: read once, on one side
                stats.duplicates += 1
                continue
            seen.add(ck)
            stats.labelled += 1
            if held_out(ck):
                stats.held_out += 1
                hx.append(x), hy.append(label), hk.append(s.key)
            else:
                tx.append(x), ty.append(label), tk.append(s.key)

    def pack(xs, ys, ks):
        x = np.stack(xs) if xs else np.zeros((0,) + tuple(shape), np.float32)
        return Labelled(x, np.asarray(ys, dtype=np.int64), ks)

    return pack(tx, ty, tk), pack(hx, hy, hk)


def peek_labels(files: Sequence[str], posted: Dict[str, object]) -> List[object]:
    """The raw labels of the samples of files (for classes taken from the data)."""
    out = []
    for f in files:
        for s in read_shard(f):
            try:
                raw = raw_label(s, posted)
            except Refused:
                continue
            if not no_label(raw):
                out.append(raw)
    return out


def first_input_shape(files: Sequence[str]) -> Optional[Tuple[int, ...]]:
    """The shape suggested by the first readable input.npy of files."""
    for f in files:
        for s in read_shard(f):
            if s.npy:
                try:
                    return sample_shape(s.npy)
                except Refused:
                    continue
    return None


def classes_from_labels(raws: Sequence[object]) -> List[str]:
    """Class names when nothing else names them: the label strings that are not indexes,
    sorted; else "0".."K-1" for the largest index label K-1."""
    names = sorted({r for r in raws if isinstance(r, str) and not _INT_RE.match(r)})
    if names:
        return names
    top = -1
    for r in raws:
        if isinstance(r, bool):
            continue
        if isinstance(r, (int, float)) and float(r).is_integer():
            top = max(top, int(r))
        elif isinstance(r, str) and _INT_RE.match(r):
            top = max(top, int(r))
    if top < 0 or top > 100_000:
        raise DataError("no classes: give --classes, a base version with edgeloop.json, or labelled data")
    return [str(i) for i in range(top + 1)]


# --- Fashion-MNIST IDX files -------------------------------------------------------------------


def is_idx_dir(p: str) -> bool:
    """Reports whether p is a directory holding Fashion-MNIST's training images (gz or not)."""
    return os.path.isdir(p) and any(os.path.exists(os.path.join(p, "train-images-idx3-ubyte" + s)) for s in (".gz", ""))


def _read_idx(path: str, ndim: int) -> np.ndarray:
    for name in (path + ".gz", path):
        if os.path.exists(name):
            opener = gzip.open if name.endswith(".gz") else open
            try:
                with opener(name, "rb") as f:
                    data = f.read()
            except (OSError, EOFError) as e:
                raise DataError(f"{name}: {e}") from e
            break
    else:
        raise DataError(f"{path}[.gz]: no such file")
    magic = 0x800 + ndim
    if len(data) < 4 + 4 * ndim or struct.unpack(">I", data[:4])[0] != magic:
        raise DataError(f"{name}: not an IDX file of {ndim} dimensions of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    n = int(np.prod(dims))
    body = data[4 + 4 * ndim:]
    if len(body) != n:
        raise DataError(f"{name}: {len(body)} bytes of data for dimensions {dims}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_idx(directory: str, split: str, limit: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's split ("train" or "t10k") as images [N,1,H,W] in [0,1] and labels [N];
    only the first limit images when limit > 0."""
    imgs = _read_idx(os.path.join(directory, f"{split}-images-idx3-ubyte"), 3)
    labels = _read_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte"), 1)
    if len(imgs) != len(labels):
        raise DataError(f"{directory}: {len(imgs)} {split} images but {len(labels)} labels")
    if limit:
        imgs, labels = imgs[:limit], labels[:limit]
    x = (imgs.astype(np.float32) / np.float32(255))[:, None, :, :]
    return np.ascontiguousarray(x), labels.astype(np.int64)


# --- dataset manifests -------------------------------------------------------------------------


@dataclass
class Manifest:
    """A dataset manifest: shard and label-file paths (local), and where each came from."""

    shards: List[str]
    labels: List[str]
    sources: Dict[str, str] = field(default_factory=dict)  # local path -> object URL


def read_local_manifest(name: str) -> Manifest:
    """Reads a local manifest: paths absolute, relative to its directory, or file:// URIs;
    other schemes are refused (a remote manifest is fetched with fetch_manifest)."""
    try:
        with open(name, "rb") as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"read manifest {name}: {e}") from e
    if not isinstance(m, dict):
        raise DataError(f"read manifest {name}: not a JSON object")
    base = os.path.dirname(os.path.abspath(name))
    out = Manifest([], [])
    for field_name, dest in (("shards", out.shards), ("labels", out.labels)):
        entries = m.get(field_name) or []
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise DataError(f"read manifest {name}: {field_name} must be a list of strings")
        for e in entries:
            try:
                dest.append(store.local_path(e, base))
            except store.StoreError as err:
                raise DataError(f"read manifest {name}: {err}; a local manifest lists local files") from err
    return out


MAX_MANIFEST_BYTES = 128 << 20


def fetch_manifest(url: str, directory: str, log) -> Manifest:
    """Downloads the remote manifest at url and every shard and label file it lists (keys
    relative to its "bucket", or to the manifest's own bucket) into directory, as
    trainers/go FetchDataset does."""
    loc = store.parse_s3_url(url)
    if not loc.key:
        raise DataError(f"fetch dataset: {url}: no manifest key")
    own = store.Bucket(store.S3Location(loc.bucket, "", loc.endpoint, loc.region, loc.insecure, loc.query))
    os.makedirs(directory, exist_ok=True)
    local = os.path.join(directory, ".manifest.json")
    own.download(loc.key, local)
    if os.path.getsize(local) > MAX_MANIFEST_BYTES:
        raise DataError(f"fetch dataset: manifest {url} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        with open(local, "rb") as f:
            m = json.load(f)
    except ValueError as e:
        raise DataError(f"fetch dataset: manifest {url}: {e}") from e
    if not isinstance(m, dict):
        raise DataError(f"fetch dataset: manifest {url}: not a JSON object")
    src, src_loc = own, store.S3Location(loc.bucket, "", loc.endpoint, loc.region, loc.insecure, loc.query)
    if m.get("bucket"):
        src_loc = store.parse_s3_url(m["bucket"])
        src = store.Bucket(src_loc)
    out = Manifest([], [])
    for field_name, dest in (("shards", out.shards), ("labels", out.labels)):
        entries = m.get(field_name) or []
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise DataError(f"fetch dataset: manifest {url}: {field_name} must be a list of keys")
        for k in entries:
            try:
                store.validate_key(k)
            except store.StoreError as e:
                raise DataError(f"fetch dataset: manifest: {e}") from e
            p = os.path.join(directory, *k.split("/"))
            src.download(k, p)
            dest.append(p)
            out.sources[p] = src_loc.url(src.name(k))
    log.info("dataset fetched", manifest=url, shards=len(out.shards), label_files=len(out.labels), dir=directory)
    return out
