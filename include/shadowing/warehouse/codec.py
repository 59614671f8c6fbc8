"""Small value helpers shared by the store modules (hashing, UTC normalisation)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any


def content_hash(payload: Any) -> str:
    """Stable hash of a JSON-able payload (key order independent)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetime (SQLite hands back naive ones; they are UTC by construction)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
