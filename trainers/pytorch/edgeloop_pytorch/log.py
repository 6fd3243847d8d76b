"""Structured logs on stderr in the Go components' formats (log/slog's logfmt or JSON), so a
job's log tail reads like the rest of edgeloop's."""

import datetime
import json
import sys

LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}
_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR"}


def _logfmt_value(v) -> str:
    if isinstance(v, float):
        s = repr(v)
    elif isinstance(v, (list, tuple)):
        s = "[" + " ".join(str(x) for x in v) + "]"
    else:
        s = str(v)
    if s == "" or any(c in s for c in ' ="\n\t') or not s.isprintable():
        return json.dumps(s)
    return s


class Logger:
    """A minimal slog-alike: logger.info("msg", key=value, ...)."""

    def __init__(self, fmt: str = "logfmt", level: str = "info", stream=None, **attrs):
        self.fmt, self.level, self.stream, self.attrs = fmt, LEVELS[level], stream or sys.stderr, attrs

    def _log(self, level: int, msg: str, kv: dict) -> None:
        if level < self.level:
            return
        t = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        rec = {"time": t, "level": _NAMES[level], "msg": msg}
        rec.update(self.attrs)
        rec.update(kv)
        if self.fmt == "json":
            line = json.dumps(rec, default=str)
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in rec.items())
        print(line, file=self.stream, flush=True)

    def debug(self, msg: str, **kv) -> None:
        self._log(10, msg, kv)

    def info(self, msg: str, **kv) -> None:
        self._log(20, msg, kv)

    def warning(self, msg: str, **kv) -> None:
        self._log(30, msg, kv)

    def error(self, msg: str, **kv) -> None:
        self._log(40, msg, kv)
