"""Gzip log files (as flow, discovery and access logs are delivered to S3), read whole or — when the delivery
was cut off — up to the last complete line.

A truncated file (an upload cut mid-way: the bytes are a prefix of a gzip stream) keeps every complete line
decoded before the cut; the partial last line is dropped and a warning names the file, the compressed byte
where the stream stops and the last line kept. Anything else that is not gzip (a corrupt block, a bad checksum,
trailing bytes that are no gzip member) is refused as a whole, naming the file.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shadowing.errors import InputError

MAGIC = b"\x1f\x8b"
GZIP_WINDOW = 16 + zlib.MAX_WBITS  # gzip header and trailer (CRC-32 and length checked by zlib)
FEED_BYTES = 1 << 20  # compressed bytes handed to zlib at a time


@dataclass
class GzipText:
    """The decompressed bytes to use (whole lines only when truncated) and the warning, if any."""

    data: bytes
    warning: str | None = None


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == MAGIC


def read_gzip(path: str | Path, what: str = "log") -> GzipText:
    """All members of a gzip file, decompressed; a truncated last member yields its complete lines + a warning.

    InputError (naming the file) when the bytes are not gzip, are corrupt, or cannot be read.
    """
    label = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{what} does not exist", source=label) from exc
    except OSError as exc:
        raise InputError(f"{what} not readable: {exc.strerror or exc}", source=label) from exc
    parts: list[bytes] = []
    at = 0  # start of the current member in the file
    member = 1
    while True:
        decompressor = zlib.decompressobj(GZIP_WINDOW)
        fed = at
        try:
            while fed < len(raw) and not decompressor.eof:
                parts.append(decompressor.decompress(raw[fed:fed + FEED_BYTES]))
                fed += FEED_BYTES
        except zlib.error as exc:
            raise InputError(f"not a readable gzip file (its member {member}, from compressed byte {at}): {exc}",
                             source=label) from exc
        if not decompressor.eof:  # the input ended inside this member: a cut-off delivery
            return _truncated(b"".join(parts), len(raw), label)
        rest = decompressor.unused_data + raw[fed:]
        if not rest.strip(b"\0"):  # end of file (gzip files may be padded with zero bytes)
            return GzipText(b"".join(parts))
        at = len(raw) - len(rest)
        if not rest.startswith(MAGIC[:len(rest)]):
            raise InputError(f"not a readable gzip file: {len(rest)} byte(s) after its end (compressed byte {at} "
                             "on) are not another gzip member", source=label)
        member += 1


def _truncated(data: bytes, size: int, label: str) -> GzipText:
    """The complete lines of what a cut-off stream decoded, and the warning saying where it was cut."""
    end = data.rfind(b"\n") + 1
    kept = data.count(b"\n", 0, end)
    partial = len(data) - end
    where = f"{label}: gzip stream cut off at compressed byte {size} (truncated file or upload)"
    if partial:
        lost = f"dropped the partial line {kept + 1} ({partial} byte(s) decoded before the cut)"
    else:
        lost = f"the cut falls after line {kept}" if kept else "nothing was decoded before the cut"
    kept_text = f"kept lines 1–{kept} ({end} bytes)" if kept else "no complete line to keep"
    return GzipText(data[:end], f"{where}: {kept_text}; {lost}")


@contextmanager
def log_text(path: str | Path, what: str) -> Iterator[tuple[IO[str], str | None]]:
    """A line-oriented log's text, plain or gzip, and the warning of a cut-off gzip file (else None); a missing or
    unreadable file (a folder, no permission) is an InputError naming it as ``what``."""
    try:
        if is_gzip(path):
            unpacked = read_gzip(path, what)
            yield io.TextIOWrapper(io.BytesIO(unpacked.data), encoding="utf-8", errors="replace"), unpacked.warning
            return
        with open(path, encoding="utf-8", errors="replace") as handle:
            yield handle, None
    except FileNotFoundError as exc:
        raise InputError(f"{what} does not exist", source=str(path)) from exc
    except OSError as exc:
        raise InputError(f"{what} not readable: {exc.strerror or exc}", source=str(path)) from exc
