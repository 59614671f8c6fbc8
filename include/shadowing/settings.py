"""Deployment settings read from the environment (cheap, no database: safe at DAG parse time).

SHADOWING_REGION_PAIRS   "us-east-1=us-west-2,eu-west-1=eu-central-1": primary=shadow pairs
SHADOWING_APP_CONFIGS    folder (or s3://bucket/prefix) with the application's configuration files
SHADOWING_STATE_DIR      where the embedded deployment keeps its files (default ./.shadowing)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from shadowing import PRIMARY_REGION, SHADOW_REGION

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INCLUDE_DIR = PROJECT_ROOT / "include"
DEMO_APP_DIR = INCLUDE_DIR / "apps" / "shopfront"


# AWS region names: a partition prefix, an optional qualifier, a direction, a number (us-east-1,
# us-gov-west-1, cn-northwest-1, us-isob-east-1, eu-isoe-west-1, eusc-de-east-1, ap-southeast-5).
REGION_NAME = re.compile(r"[a-z]{2,4}(-[a-z]+){1,2}-\d{1,2}")


def is_region_name(name: str) -> bool:
    """Whether ``name`` reads as an AWS region name (the one check every DAG, CLI and blueprint uses)."""
    return REGION_NAME.fullmatch(name) is not None


def region_pairs() -> dict[str, str]:
    """Primary region → shadow region, in configuration order."""
    raw = os.environ.get("SHADOWING_REGION_PAIRS", f"{PRIMARY_REGION}={SHADOW_REGION}")
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        primary, sep, shadow = item.partition("=")
        if not sep or not primary.strip() or not shadow.strip():
            raise ValueError(f"SHADOWING_REGION_PAIRS: expected primary=shadow, got {item!r}")
        pairs[primary.strip()] = shadow.strip()
    return pairs


def primary_regions() -> list[str]:
    return list(region_pairs())


def app_configs_location() -> str:
    return os.environ.get("SHADOWING_APP_CONFIGS", str(DEMO_APP_DIR))


def state_dir() -> Path:
    return Path(os.environ.get("SHADOWING_STATE_DIR", PROJECT_ROOT / ".shadowing"))
