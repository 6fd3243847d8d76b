"""Object URLs as edgeloop writes them (internal/objstore/url.go), read and written with boto3.

    s3://bucket[/prefix][?endpoint=host:port][&region=r][&insecure=true][&part_size=bytes]

The endpoint defaults to s3.amazonaws.com, TLS unless insecure=true. Credentials never travel in
the URL: they come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, both or neither (anonymous).
file:///path and plain paths are local. Other schemes are refused with an error that says so.
"""

import os
import posixpath
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from typing import Optional

ENV_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
ENV_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"

KNOWN_PARAMS = ("endpoint", "region", "insecure", "part_size")


class StoreError(Exception):
    """An object URL that cannot be parsed, or an object that cannot be read or written."""


def is_remote(p: str) -> bool:
    """Reports whether p is an object URL rather than a local path or file:// URI (the Go
    trainer's IsRemote: a scheme of two or more letters that is not file)."""
    u = urllib.parse.urlsplit(p)
    return len(u.scheme) > 1 and u.scheme != "file"


def local_path(p: str, base: str = "") -> str:
    """Returns the local path of p (a path or file:// URI), relative paths joined to base."""
    u = urllib.parse.urlsplit(p)
    if len(u.scheme) > 1:
        if u.scheme != "file":
            raise StoreError(f"{p!r}: not a local path or file:// URI")
        if u.netloc not in ("", "localhost"):
            raise StoreError(f"{p!r}: a file URL names a local path (file:///path), not host {u.netloc!r}")
        p = urllib.parse.unquote(u.path)
    if base and not os.path.isabs(p):
        p = os.path.join(base, p)
    return p


def file_uri(p: str) -> str:
    """The file:// URI of a local path, made absolute (as the Go trainer records datasets)."""
    return "file://" + urllib.parse.quote(os.path.abspath(p))


@dataclass
class S3Location:
    """A parsed s3:// URL: the bucket's connection and a key (or key prefix) in it."""

    bucket: str
    key: str
    endpoint: str = "s3.amazonaws.com"
    region: str = ""
    insecure: bool = False
    query: str = ""

    def bucket_url(self) -> str:
        """The URL of the bucket alone, with the same query (what keys are relative to)."""
        return urllib.parse.urlunsplit(("s3", self.bucket, "", self.query, ""))

    def url(self, key: Optional[str] = None) -> str:
        """The URL of key (default: this location's key) in the same bucket."""
        k = self.key if key is None else key
        return urllib.parse.urlunsplit(("s3", self.bucket, "/" + k if k else "", self.query, ""))

    def join(self, name: str) -> "S3Location":
        """The location of name under this one's key, as a prefix."""
        return S3Location(self.bucket, posixpath.join(self.key, name) if self.key else name,
                          self.endpoint, self.region, self.insecure, self.query)


def parse_s3_url(raw: str) -> S3Location:
    """Parses an s3:// URL with edgeloop's parameters; unknown or repeated parameters are
    errors, as in internal/objstore."""
    u = urllib.parse.urlsplit(raw)
    if u.scheme != "s3":
        raise StoreError(f"{raw!r}: only s3:// object URLs are supported by the PyTorch job (got scheme {u.scheme!r})")
    if "@" in u.netloc:
        raise StoreError(f"object URL {u.scheme}://{u.hostname}...: credentials in the URL are not accepted; "
                         f"set {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}")
    if not u.netloc:
        raise StoreError(f"object URL {raw!r}: no bucket")
    if u.fragment:
        raise StoreError(f"object URL {raw!r}: an s3 URL takes no fragment")
    loc = S3Location(bucket=u.netloc, key=u.path.strip("/"), query=u.query)
    params = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    for name, values in params.items():
        if len(values) != 1:
            raise StoreError(f"object URL {raw!r}: parameter {name} given {len(values)} times")
        v = values[0]
        if name == "endpoint":
            if not v or "://" in v or any(c in v for c in "/?#@ "):
                raise StoreError(f"object URL {raw!r}: endpoint must be host or host:port, got {v!r}")
            loc.endpoint = v
        elif name == "region":
            loc.region = v
        elif name == "insecure":
            # Go's strconv.ParseBool spellings.
            if v in ("1", "t", "T", "TRUE", "true", "True"):
                loc.insecure = True
            elif v in ("0", "f", "F", "FALSE", "false", "False"):
                loc.insecure = False
            else:
                raise StoreError(f"object URL {raw!r}: insecure must be true or false, got {v!r}")
        elif name == "part_size":
            if not v.lstrip("-").isdigit():
                raise StoreError(f"object URL {raw!r}: part_size must be a number of bytes, got {v!r}")
        else:
            raise StoreError(f"object URL {raw!r}: unknown parameter {name!r} (known: {', '.join(KNOWN_PARAMS)})")
    return loc


def validate_key(key: str) -> None:
    """Refuses keys that could escape a local download directory or address another prefix."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise StoreError(f"object key {key!r}: must be a relative path")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise StoreError(f"object key {key!r}: empty, '.' or '..' path segment")


class Bucket:
    """One S3 bucket on one endpoint, through boto3."""

    def __init__(self, loc: S3Location):
        try:
            import boto3  # Debian python3-boto3; only remote jobs need it
            import botocore
            from botocore.config import Config
        except ImportError as e:  # pragma: no cover - depends on the image
            raise StoreError(f"s3 URLs need boto3 (Debian python3-boto3, pip boto3): {e}") from e
        access, secret = os.environ.get(ENV_ACCESS_KEY, ""), os.environ.get(ENV_SECRET_KEY, "")
        if bool(access) != bool(secret):
            raise StoreError(f"{ENV_ACCESS_KEY} and {ENV_SECRET_KEY} must be set together (or both unset for anonymous access)")
        kwargs = {}
        cfg = {"retries": {"max_attempts": 5, "mode": "standard"}}
        if not loc.endpoint.endswith("amazonaws.com"):
            # MinIO and most S3-compatible stores want path-style requests, as minio-go sends.
            cfg["s3"] = {"addressing_style": "path"}
        if access:
            kwargs.update(aws_access_key_id=access, aws_secret_access_key=secret)
        else:
            cfg["signature_version"] = botocore.UNSIGNED
        scheme = "http" if loc.insecure else "https"
        self._loc = loc
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=f"{scheme}://{loc.endpoint}", region_name=loc.region or "us-east-1",
            config=Config(**cfg), **kwargs)
        self._missing = botocore.exceptions.ClientError

    def name(self, key: str) -> str:
        """The object name of key: the URL's path is a prefix of every key."""
        return posixpath.join(self._loc.key, key) if self._loc.key else key

    def download(self, key: str, dest: str) -> None:
        """Downloads key to dest through a temporary file renamed into place."""
        validate_key(key)
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", prefix=".download-")
        try:
            with os.fdopen(fd, "wb") as f:
                self._client.download_fileobj(self._loc.bucket, self.name(key), f)
            os.replace(tmp, dest)
        except Exception as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreError(f"download s3://{self._loc.bucket}/{self.name(key)}: {e}") from e

    def exists(self, key: str) -> bool:
        """Reports whether key exists (a HEAD request)."""
        try:
            self._client.head_object(Bucket=self._loc.bucket, Key=self.name(key))
            return True
        except self._missing as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StoreError(f"head s3://{self._loc.bucket}/{self.name(key)}: {e}") from e

    def upload(self, src: str, key: str) -> None:
        """Uploads the file src as key."""
        validate_key(key)
        try:
            with open(src, "rb") as f:
                self._client.upload_fileobj(f, self._loc.bucket, self.name(key))
        except Exception as e:
            raise StoreError(f"upload s3://{self._loc.bucket}/{self.name(key)}: {e}") from e


def open_bucket(url: str) -> Bucket:
    """Opens the bucket a bucket URL (s3://bucket[/prefix]?...) names; keys are relative to
    its path."""
    return Bucket(parse_s3_url(url))


def copy_local(src: str, dest: str) -> None:
    """Copies a file through a temporary name renamed into place."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", prefix=".copy-")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
