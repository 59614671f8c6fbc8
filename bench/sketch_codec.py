"""Bulk sketch codec benchmark on a real capacity fingerprint: decode every sketch, re-encode, same bytes?

    .venv/bin/python bench/sketch_codec.py [--fingerprint bench/.data/fp_20x25.json] [--baseline REV] [--repeat N]

The fingerprint (written by bench/fingerprint.py) holds three kinds of encoded sketches, each timed as one bulk
call, as a fingerprint render/fold does:
  instances   per-instance count sketches, zlib *stored* (encode_counts(compress=False) / decode_counts)
  pooled      per-service pooled and aggregate count sketches, deflated (encode_counts / decode_counts)
  decayed     their decayed-weight sketches (encode_weights / decode_weights)
plus grouped_quantiles over the decoded instance bins. Every re-encoded string must equal the stored one.

Contenders on the same sketches: ``ours`` (the package now), ``baseline`` (the package's sketch module at git
revision REV, if given: before/after in one run), ``one-by-one`` (LogSketch.from_compact / to_compact per
sketch) and ``ddsketch`` (the reference library's protobuf round trip, DDSketch ↔ bytes, same buckets).
Figures are the best of ``--repeat`` runs, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shadowing.metrics import sketch

ROOT = Path(__file__).resolve().parents[1]


def collect(fp: dict[str, Any]) -> dict[str, list[str]]:
    """The fingerprint's encoded sketches by kind (instances stored, pooled deflated, decayed weights)."""
    out: dict[str, list[str]] = {"instances": [], "pooled": [], "decayed": []}
    for service in fp["services"].values():
        for metrics in (service.get("instances") or {}).get("by_id", {}).values():
            out["instances"].extend(e["sketch"] for e in metrics.values())
        for part in ("metrics", "aggregate"):
            for e in (service.get(part) or {}).values():
                out["pooled"].append(e["sketch"])
                if e.get("decayed_sketch"):
                    out["decayed"].append(e["decayed_sketch"])
    return out


def best_ms(cases: dict[str, dict[str, Callable[[], object]]], repeat: int) -> dict[str, dict[str, float]]:
    """Best time of each case (contender → row → call), in ms; rounds interleave the contenders so that a
    busy neighbour on a shared machine slows them alike."""
    best: dict[str, dict[str, float]] = {name: {} for name in cases}
    for _ in range(repeat):
        for name, rows in cases.items():
            for row, fn in rows.items():
                t0 = time.perf_counter()
                fn()
                elapsed = 1000 * (time.perf_counter() - t0)
                best[name][row] = min(best[name].get(row, elapsed), elapsed)
    return best


def load_baseline(rev: str) -> types.ModuleType:
    """The sketch module as it was at git revision ``rev`` (imported under another name)."""
    source = subprocess.run(["git", "show", f"{rev}:include/shadowing/metrics/sketch.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("sketch_baseline")
    sys.modules[module.__name__] = module  # dataclasses look their module up while building LogSketch
    exec(compile(source, f"sketch@{rev}", "exec"), module.__dict__)
    return module


def bulk_cases(mod: types.ModuleType, kinds: dict[str, list[str]]) -> dict[str, Callable[[], object]]:
    """The bulk calls of one codec module; raises if any re-encoded string differs from the stored one."""
    inst, pooled, decayed = kinds["instances"], kinds["pooled"], kinds["decayed"]
    gi, oi, ci = mod.decode_counts(inst)
    gp, op, cp = mod.decode_counts(pooled)
    gd, od, wd = mod.decode_weights(decayed)
    if mod.encode_counts(gi, oi, ci, len(inst), compress=False) != inst:
        raise AssertionError(f"{mod.__name__}: instance sketches re-encode differently")
    if mod.encode_counts(gp, op, cp, len(pooled)) != pooled:
        raise AssertionError(f"{mod.__name__}: pooled sketches re-encode differently")
    if mod.encode_weights(gd, od, wd, len(decayed)) != decayed:
        raise AssertionError(f"{mod.__name__}: decayed sketches re-encode differently")
    qs = (0.5, 0.9, 0.95, 0.99)
    return {
        "decode instances": lambda: mod.decode_counts(inst),
        "encode instances": lambda: mod.encode_counts(gi, oi, ci, len(inst), compress=False),
        "decode pooled": lambda: mod.decode_counts(pooled),
        "encode pooled": lambda: mod.encode_counts(gp, op, cp, len(pooled)),
        "decode decayed": lambda: mod.decode_weights(decayed),
        "encode decayed": lambda: mod.encode_weights(gd, od, wd, len(decayed)),
        "quantiles instances": lambda: mod.grouped_quantiles(gi, oi, ci, len(inst), qs),
        "decayed quantiles": lambda: mod.grouped_quantiles(gd, od, wd, len(decayed), qs, weighted=True),
    }


def peer_cases(kinds: dict[str, list[str]]) -> dict[str, dict[str, Callable[[], object]]]:
    """One-by-one LogSketch and the ddsketch protobuf round trip on the instance sketches."""
    from ddsketch.pb.proto import DDSketchProto, pb

    inst = kinds["instances"]
    one = [sketch.LogSketch.from_compact(t) for t in inst]
    dds = [s.to_ddsketch() for s in one]
    protos = [DDSketchProto.to_proto(d).SerializeToString() for d in dds]
    return {
        "one-by-one": {"decode instances": lambda: [sketch.LogSketch.from_compact(t) for t in inst],
                       "encode instances": lambda: [s.to_compact() for s in one]},
        "ddsketch": {"decode instances": lambda: [DDSketchProto.from_proto(pb.DDSketch.FromString(raw))
                                                  for raw in protos],
                     "encode instances": lambda: [DDSketchProto.to_proto(d).SerializeToString() for d in dds]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingerprint", type=Path, default=ROOT / "bench" / ".data" / "fp_20x25.json")
    parser.add_argument("--baseline", help="git revision whose sketch module to time as well (before/after)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-peers", action="store_true", help="skip the one-by-one and ddsketch contenders")
    args = parser.parse_args()
    if not args.fingerprint.exists():
        print(f"{args.fingerprint} missing: run bench/fingerprint.py first", file=sys.stderr)
        return 2
    kinds = collect(json.loads(args.fingerprint.read_text()))
    print(f"{args.fingerprint.name}: " + ", ".join(f"{len(v)} {k}" for k, v in kinds.items())
          + f"; {sum(map(len, kinds['instances'])) / 1e6:.2f} MB of instance sketches")
    cases = {"ours": bulk_cases(sketch, kinds)}
    if args.baseline:
        cases[f"baseline@{args.baseline}"] = bulk_cases(load_baseline(args.baseline), kinds)
    if not args.no_peers:
        cases.update(peer_cases(kinds))
    table = best_ms(cases, args.repeat)
    print("all re-encoded sketches are byte-identical to the stored ones")
    names = list(table)
    print(f"{'ms (best of ' + str(args.repeat) + ')':<22}" + "".join(f"{n:>20}" for n in names)
          + ("   speed-up" if args.baseline else ""))
    for row in table["ours"]:
        cells = "".join(f"{table[n][row]:>20.2f}" if row in table[n] else f"{'—':>20}" for n in names)
        gain = f"{table[names[1]][row] / table['ours'][row]:>10.1f}×" if args.baseline else ""
        print(f"{row:<22}{cells}{gain}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
