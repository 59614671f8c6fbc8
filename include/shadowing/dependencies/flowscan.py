"""Fast reader of flow-log files: one compiled pass over newline-aligned byte blocks (numba).

The kernel walks each line once: it checks the number of fields, decodes only the needed ones straight from the
bytes (integers digit by digit; ``ACCEPT``/``REJECT``/``OK`` by comparison; addresses by a hash look-up in a
table of the inventory's addresses, confirmed byte for byte, so a match is exact string equality as in the
exact reader), and picks the ``pkt-*`` address when it is present and differs. The block's columns then go
through the same filters, time-ranged inventory look-up and counters as the exact (pyarrow) reader's batches.

Anything the fast reader is not sure about — a line with another number of fields, a comment or blank line,
a carriage return, a needed integer that is not plain digits (or ``-``) or too long — raises
`NeedsExactReader`: the caller then reads the file with the exact reader, which copes (comments) or reports
the file and line (bad input). A large file is split into byte ranges read by threads in parallel.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from shadowing.dependencies.inventory import Inventory


def narrow(keep: np.ndarray, passes: np.ndarray, stats: dict[str, int], reason: str) -> None:
    """``keep &= passes`` in place, counting under ``reason`` the kept records it drops (both readers' filters)."""
    stats[reason] += int((keep & ~passes).sum())
    keep &= passes


BLOCK_BYTES = 4 << 20  # per block (~18k records)
PARALLEL_MIN_BYTES = 16 << 20  # smaller files are read by one thread
CHUNK_RECORDS = 1 << 20  # kept records are stored in chunks of this many
STATS = ("records", "rejected", "nodata", "impossible", "not_tcp_udp", "outside_inventory", "same_service")
# Field roles for the kernel: integer columns (with their null default and digit limit, within the exact
# reader's types), addresses, and the two compared words.
INTS = (("srcport", -1, 9), ("dstport", -1, 9), ("protocol", -1, 4), ("tcp-flags", 0, 4), ("bytes", 0, 18),
        ("start", 0, 18))
ADDRESSES = ("srcaddr", "dstaddr", "pkt-srcaddr", "pkt-dstaddr")
ROLE_ACTION, ROLE_STATUS = 1 + len(INTS) + len(ADDRESSES), 2 + len(INTS) + len(ADDRESSES)
ACCEPT, REJECT, OK, NULL, OTHER = 1, 2, 1, 0, 3  # decoded action / log-status values
EMPTY = np.uint64(2**64 - 1)
# A record's identity, to count once the same record read from two inputs (the same flow logged in v5 and in
# v2 format, a file given twice): every default-format field but version, account and action/status. The text
# fields are hashed as written, the integers as decoded (both readers agree on both).
IDENTITY_TEXT = ("interface-id", "srcaddr", "dstaddr", "packets", "end")
IDENTITY_INTS = ("srcport", "dstport", "protocol", "bytes", "start")
FNV_OFFSET, FNV_PRIME = np.uint64(14695981039346656037), np.uint64(1099511628211)
_KEEP_LOW = np.array([(1 << (8 * k)) - 1 for k in range(9)], np.uint64)  # the low k bytes of a word
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64: Fibonacci hashing of edge keys


class NeedsExactReader(Exception):  # noqa: N818 - a signal to the caller, not an error report
    """The fast reader cannot vouch for this input; the exact reader decides (and names the line)."""


def identity_fields_missing(fields: Sequence[str]) -> list[str]:
    """The identity fields a format lacks (its records cannot be matched with another input's)."""
    return [name for name in (*IDENTITY_TEXT, *IDENTITY_INTS) if name not in fields]


def mix_identity(text_hash: np.ndarray, ints: Sequence[np.ndarray]) -> np.ndarray:
    """Per record, the text fields' hash folded with the integer fields (as decoded, nulls as their default)."""
    mixed = text_hash.astype(np.uint64, copy=True)
    for values in ints:
        mixed ^= values.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        mixed *= FNV_PRIME
        mixed ^= mixed >> np.uint64(31)
    return mixed


@numba.njit(cache=True, nogil=True)
def _fold(h: np.uint64, data: np.ndarray, begin: int, end: int) -> np.uint64:
    """FNV-1a of data[begin:end] then a space, continuing from h."""
    for j in range(begin, end):
        h = (h ^ np.uint64(data[j])) * FNV_PRIME
    return (h ^ np.uint64(32)) * FNV_PRIME


@numba.njit(cache=True, nogil=True)
def fold_text_column(hashes: np.ndarray, data: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> None:
    """Fold one text column (Arrow offsets and bytes; a null is the log's "-") into the per-record hashes."""
    dash = np.array([45], np.uint8)
    for i in range(len(hashes)):
        if valid[i]:
            hashes[i] = _fold(hashes[i], data, offsets[i], offsets[i + 1])
        else:
            hashes[i] = _fold(hashes[i], dash, 0, 1)


@dataclass
class Partial:
    """What a byte range contributes: counters, the narrow columns of the records that count, blocked keys, and
    (when inputs are matched) the identity of every record read."""

    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATS, 0))
    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    blocked: list[np.ndarray] = field(default_factory=list)
    seen: list[np.ndarray] = field(default_factory=list)
    filled: int = 0  # records in the last chunk of every column

    def add_columns(self, **columns: np.ndarray) -> None:
        """Append a block's records to chunks of CHUNK_RECORDS (a few large arrays instead of one small array
        per column and block: less heap fragmentation, cheaper to join)."""
        count = len(next(iter(columns.values())))
        done = 0
        while done < count:
            if not self.columns or self.filled == CHUNK_RECORDS:
                for name, values in columns.items():
                    self.columns.setdefault(name, []).append(np.empty(CHUNK_RECORDS, values.dtype))
                self.filled = 0
            take = min(count - done, CHUNK_RECORDS - self.filled)
            for name, values in columns.items():
                self.columns[name][-1][self.filled:self.filled + take] = values[done:done + take]
            self.filled += take
            done += take

    def finished(self) -> Partial:
        """The columns cut to the records they hold."""
        for parts in self.columns.values():
            parts[-1] = parts[-1][:self.filled].copy()
        return self



class AddressTable:
    """The inventory's addresses as bytes, and an open-addressing hash table (FNV-1a) of their indexes."""

    def __init__(self, addresses: Sequence[str]) -> None:
        encoded = [a.encode() for a in addresses]
        width = max((len(a) for a in encoded), default=1)
        self.bytes = np.zeros((max(1, len(encoded)), width), np.uint8)
        self.lengths = np.full(max(1, len(encoded)), -1, np.int64)
        for i, text in enumerate(encoded):
            self.bytes[i, :len(text)] = np.frombuffer(text, np.uint8)
            self.lengths[i] = len(text)
        size = 1 << max(4, (4 * max(1, len(encoded)) - 1).bit_length())
        self.table = np.full(size, -1, np.int64)
        # addresses of up to 16 bytes (all IPv4, short IPv6) are also keyed by two masked words and the length:
        # rows [word 0, word 1, length, index], an empty row has length EMPTY
        self.short = np.zeros((size, 4), np.uint64)
        self.short[:, 2] = EMPTY
        for i, text in enumerate(encoded):
            slot = _fnv1a(np.frombuffer(text, np.uint8), 0, len(text)) & (size - 1)
            while self.table[slot] >= 0:
                slot = (slot + 1) & (size - 1)
            self.table[slot] = i
            if len(text) <= 16:
                w0, w1 = np.frombuffer(text.ljust(16, b"\0"), "<u8")
                slot = _short_slot(w0, w1, len(text), size)
                while self.short[slot, 2] != EMPTY:
                    slot = (slot + 1) & (size - 1)
                self.short[slot] = (w0, w1, len(text), i)


class Layout:
    """The role of every field of a line (0 = not needed) for the kernel, and which columns the format has."""

    def __init__(self, fields: Sequence[str], identity: bool = False) -> None:
        self.fields = list(fields)
        if len(set(self.fields)) != len(self.fields):
            raise NeedsExactReader("repeated field names")
        roles = {name: 1 + i for i, (name, _, _) in enumerate(INTS)}
        roles.update({name: 1 + len(INTS) + i for i, name in enumerate(ADDRESSES)})
        roles.update({"action": ROLE_ACTION, "log-status": ROLE_STATUS})
        self.needed = np.array([k for k, name in enumerate(self.fields) if name in roles], np.int64)
        self.roles = np.array([roles[name] for name in self.fields if name in roles], np.int64)
        self.present = set(self.fields)
        self.int_defaults = np.array([default for _, default, _ in INTS], np.int64)
        self.int_digits = np.array([digits for _, _, digits in INTS], np.int64)
        self.int_at = {name: i for i, (name, _, _) in enumerate(INTS)}
        self.identity = identity and not identity_fields_missing(self.fields)
        self.ident_fields = np.array([self.fields.index(name) for name in IDENTITY_TEXT] if self.identity else [],
                                     np.int64)


@numba.njit(cache=True, nogil=True)
def _fnv1a(data: np.ndarray, begin: int, end: int) -> int:
    h = np.uint64(14695981039346656037)
    for j in range(begin, end):
        h = (h ^ np.uint64(data[j])) * np.uint64(1099511628211)
    return int(h >> np.uint64(1))


@numba.njit(cache=True, nogil=True)
def _short_key(words: np.ndarray, begin: int, length: int) -> tuple[np.uint64, np.uint64]:
    """The first 16 bytes of a field of `length` <= 16 as two little-endian words, zero past its end."""
    return (words[begin] & _KEEP_LOW[min(length, 8)],
            words[begin + 8] & _KEEP_LOW[max(0, min(length - 8, 8))])


@numba.njit(cache=True, nogil=True)
def _short_slot(w0: np.uint64, w1: np.uint64, length: int, size: int) -> int:
    mixed = (w0 * np.uint64(0x9E3779B97F4A7C15)) ^ (w1 * np.uint64(0xC2B2AE3D27D4EB4F)) ^ np.uint64(length)
    mixed ^= mixed >> np.uint64(29)
    return np.int64(mixed & np.uint64(size - 1))


@numba.njit(cache=True, nogil=True)
def _find_short(words: np.ndarray, begin: int, length: int, short: np.ndarray) -> int:
    w0, w1 = _short_key(words, begin, length)
    size = short.shape[0]
    slot = _short_slot(w0, w1, length, size)
    while short[slot, 2] != EMPTY:
        if short[slot, 2] == length and short[slot, 0] == w0 and short[slot, 1] == w1:
            return np.int64(short[slot, 3])
        slot = (slot + 1) & (size - 1)
    return -1


@numba.njit(cache=True, nogil=True)
def _find_address(data: np.ndarray, begin: int, end: int, ip_bytes: np.ndarray, ip_lengths: np.ndarray,
                  table: np.ndarray) -> int:
    length = end - begin
    if length > ip_bytes.shape[1]:
        return -1
    mask = len(table) - 1
    slot = _fnv1a(data, begin, end) & mask
    while table[slot] >= 0:
        k = table[slot]
        if ip_lengths[k] == length:
            j = 0
            while j < length and ip_bytes[k, j] == data[begin + j]:
                j += 1
            if j == length:
                return k
        slot = (slot + 1) & mask
    return -1


@numba.njit(cache=True, nogil=True)
def _separators(data: np.ndarray, size: int, positions: np.ndarray) -> tuple[int, int, bool]:
    """Positions of the spaces and newlines of data[:size], the newline count, and whether it holds a carriage
    return: per 64 bytes, a bit mask of separators (a vectorisable loop), then its set bits in order."""
    count = 0
    newlines = 0
    carriage = 0
    whole = size - size % 64
    for base in range(0, whole, 64):
        separators = np.uint64(0)
        for j in range(64):
            b = data[base + j]
            separators |= np.uint64((b == 32) | (b == 10)) << np.uint64(j)
            newlines += b == 10
            carriage |= b == 13
        while separators:
            positions[count] = base + trailing_zeros(separators)
            count += 1
            separators &= separators - np.uint64(1)
    for i in range(whole, size):
        b = data[i]
        positions[count] = i
        count += (b == 32) | (b == 10)
        newlines += b == 10
        carriage |= b == 13
    return count, newlines, carriage != 0


@numba.njit(cache=True, nogil=True)
def _decode(data: np.ndarray, size: int, n_fields: int, needed: np.ndarray, roles: np.ndarray,
            int_defaults: np.ndarray, int_digits: np.ndarray, ip_bytes: np.ndarray, ip_lengths: np.ndarray,
            table: np.ndarray, short: np.ndarray, words8: np.ndarray, positions: np.ndarray, ints: np.ndarray,
            ends: np.ndarray, words: np.ndarray, ident_fields: np.ndarray, ident: np.ndarray) -> int:
    """Decode the lines of data[:size] (each ends with a newline) into ints / ends (address index of source and
    destination) / words (action, log-status) / ident (hash of the identity text fields, when `ident_fields`
    names them). Returns the line count, or −1 when a line is not plain.
    """
    count, newlines, carriage = _separators(data, size, positions)
    n = count // n_fields
    if carriage or newlines != n or n * n_fields != count or n > len(ints):
        return -1
    n_ints = len(int_defaults)
    spans = np.zeros((4, 2), np.int64)  # begin, end of the four address fields of the line
    for line in range(n):
        base = line * n_fields
        if data[positions[base + n_fields - 1]] != 10:  # with n newlines in all, each line has n_fields fields
            return -1
        line_start = positions[base - 1] + 1 if line else 0
        if data[line_start] == 35:  # a comment line
            return -1
        for c in range(n_ints):
            ints[line, c] = int_defaults[c]
        for a in range(4):
            spans[a, 0] = -1
        words[line, 0] = NULL
        words[line, 1] = NULL
        for f in range(len(needed)):
            k = needed[f]
            role = roles[f]
            begin = positions[base + k - 1] + 1 if k else line_start
            end = positions[base + k]
            length = end - begin
            if role <= n_ints:
                c = role - 1
                if length == 1 and data[begin] == 45:  # '-' = null
                    continue
                if length == 0 or length > int_digits[c]:
                    return -1
                value = 0
                for j in range(begin, end):
                    d = data[j] - 48
                    if d < 0 or d > 9:
                        return -1
                    value = value * 10 + d
                ints[line, c] = value
            elif role <= n_ints + 4:
                a = role - 1 - n_ints
                spans[a, 0] = begin
                spans[a, 1] = end
            else:
                w = role - 1 - n_ints - 4
                if length == 1 and data[begin] == 45:
                    words[line, w] = NULL
                elif w == 0 and length == 6 and data[begin] == 65 and data[begin + 1] == 67 and \
                        data[begin + 2] == 67 and data[begin + 3] == 69 and data[begin + 4] == 80 and \
                        data[begin + 5] == 84:  # ACCEPT
                    words[line, w] = ACCEPT
                elif w == 0 and length == 6 and data[begin] == 82 and data[begin + 1] == 69 and \
                        data[begin + 2] == 74 and data[begin + 3] == 69 and data[begin + 4] == 67 and \
                        data[begin + 5] == 84:  # REJECT
                    words[line, w] = REJECT
                elif w == 1 and length == 2 and data[begin] == 79 and data[begin + 1] == 75:  # OK
                    words[line, w] = OK
                else:
                    words[line, w] = OTHER
        for side in range(2):
            primary, packet = side, side + 2
            use = primary
            if spans[packet, 0] >= 0:  # behind NAT/TGW/LB ENIs the pkt-* address is the real endpoint
                pb, pe = spans[packet, 0], spans[packet, 1]
                if not (pe - pb == 1 and data[pb] == 45):
                    qb, qe = spans[primary, 0], spans[primary, 1]
                    same = pe - pb == qe - qb
                    if same and pe - pb <= 16:
                        same = _short_key(words8, pb, pe - pb) == _short_key(words8, qb, qe - qb)
                    else:
                        j = 0
                        while same and j < pe - pb:
                            same = data[pb + j] == data[qb + j]
                            j += 1
                    if not same:
                        use = packet
            if spans[use, 0] < 0:
                ends[line, side] = -1
            elif spans[use, 1] - spans[use, 0] <= 16:
                ends[line, side] = _find_short(words8, spans[use, 0], spans[use, 1] - spans[use, 0], short)
            else:
                ends[line, side] = _find_address(data, spans[use, 0], spans[use, 1], ip_bytes, ip_lengths, table)
        if len(ident_fields):
            h = FNV_OFFSET
            for k in ident_fields:
                h = _fold(h, data, positions[base + k - 1] + 1 if k else line_start, positions[base + k])
            ident[line] = h
    return n


@numba.njit(cache=True, nogil=True)
def distinct_peer_counts(src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray,
                         n_services: int) -> np.ndarray:
    """Per (service, port) endpoint (dense, n_services·65536), how many distinct peer endpoints it exchanged
    records with. A server's port is reached from many clients' ephemeral ports; a client's ephemeral port
    talks to one server however many records a long-lived connection logs (EDGE_INFERENCE_NOTES.md §1b).
    A record's two endpoints form an unordered pair (request, response and both ENI copies are one pair),
    kept in an open-addressing hash set that grows as pairs arrive: distinct pairs are few next to records."""
    size = np.int64(n_services) * 65536
    peers = np.zeros(size, np.int32)
    bits = 16
    table = np.full(1 << bits, -1, np.int64)
    used = 0
    previous = np.int64(-1)  # consecutive records often share a pair
    for i in range(len(src)):
        a = np.int64(src[i]) * 65536 + min(max(sport[i], 0), 65535)
        b = np.int64(dst[i]) * 65536 + min(max(dport[i], 0), 65535)
        low, high = min(a, b), max(a, b)
        pair = low * size + high
        if pair == previous:
            continue
        previous = pair
        mask = (1 << bits) - 1
        slot = _pair_slot(pair, bits)
        while table[slot] >= 0 and table[slot] != pair:
            slot = (slot + 1) & mask
        if table[slot] == pair:
            continue
        table[slot] = pair
        peers[low] += 1
        peers[high] += 1
        used += 1
        if 2 * used > (1 << bits):  # keep the set at most half full
            bits += 1
            grown = np.full(1 << bits, -1, np.int64)
            for old in table:
                if old >= 0:
                    s = _pair_slot(old, bits)
                    while grown[s] >= 0:
                        s = (s + 1) & ((1 << bits) - 1)
                    grown[s] = old
            table = grown
    return peers


@numba.njit(cache=True, nogil=True)
def _pair_slot(pair: int, bits: int) -> int:
    """The top `bits` bits of a Fibonacci hash of the pair (any table size up to 2**63 slots)."""
    return np.int64((np.uint64(pair) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))


@numba.njit(cache=True, nogil=True)
def orient_records(src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray, flags: np.ndarray,
                   n_services: int, configured: np.ndarray, listen_min_peers: int, ephemeral_low: int) -> np.ndarray:
    """Per record, its oriented edge key (caller·n + callee)·65536 + port, by `flowlogs`' direction rules:
    tcp-flags (SYN = caller, SYN-ACK = callee), then listening endpoints — known ones (configured or SYN-proven)
    before ones reached from at least `listen_min_peers` distinct peer endpoints (`distinct_peer_counts`: a
    client's long-lived ephemeral port is in many records too, but with one peer) — then the ephemeral range,
    then the endpoint with more distinct peers, then the lower port as the server's.
    Endpoint tables are dense over (service, port): the caller keeps n_services·65536 small."""
    size = n_services * 65536
    peers = distinct_peer_counts(src, dst, sport, dport, n_services)
    listening = np.zeros(size, np.bool_)
    known = np.zeros(size, np.bool_)  # configured or SYN-proven
    n = len(src)
    caller_is_src = np.empty(n, np.int8)
    for i in range(n):
        if flags[i] & 2:
            if flags[i] & 16:  # SYN-ACK: the source is the callee, listening on its port
                caller_is_src[i] = 0
                known[src[i] * 65536 + min(max(sport[i], 0), 65535)] = True
            else:
                caller_is_src[i] = 1
                known[dst[i] * 65536 + min(max(dport[i], 0), 65535)] = True
        else:
            caller_is_src[i] = -1
    for k in configured:
        known[k] = True
    for k in range(size):
        if peers[k] >= listen_min_peers or known[k]:
            listening[k] = True
    keys = np.empty(n, np.int64)
    for i in range(n):
        sp, dp = sport[i], dport[i]
        from_src = caller_is_src[i]
        if from_src < 0:
            src_key = src[i] * 65536 + min(max(sp, 0), 65535)
            dst_key = dst[i] * 65536 + min(max(dp, 0), 65535)
            src_listens, dst_listens = listening[src_key], listening[dst_key]
            if known[src_key] != known[dst_key]:
                from_src = 1 if known[dst_key] else 0
            elif src_listens != dst_listens:
                from_src = 1 if dst_listens else 0
            elif (sp >= ephemeral_low) != (dp >= ephemeral_low):
                from_src = 1 if sp >= ephemeral_low else 0
            elif peers[src_key] != peers[dst_key]:  # both ports in (or out of) the range: a few clients still tell
                from_src = 1 if peers[dst_key] > peers[src_key] else 0
            else:
                from_src = 1 if sp > dp else 0
        if from_src == 1:
            keys[i] = (np.int64(src[i]) * n_services + dst[i]) * 65536 + min(max(dp, 0), 65535)
        else:
            keys[i] = (np.int64(dst[i]) * n_services + src[i]) * 65536 + min(max(sp, 0), 65535)
    return keys


@numba.njit(cache=True, nogil=True)
def _slot(key: int, capacity: int) -> int:
    mixed = (key ^ (key >> 29)) * _GOLDEN  # Fibonacci hashing: the high bits are well mixed
    return (mixed >> 40) & (capacity - 1)


@numba.njit(cache=True, nogil=True)
def distinct_windows(edge_id: np.ndarray, start: np.ndarray, window_seconds: int, n_edges: int,
                     limit: int) -> np.ndarray:
    """Distinct aggregation windows per edge over a bitmap of (edge, window); empty when it would exceed `limit`
    cells (the caller counts through a sort)."""
    low = np.iinfo(np.int64).max
    high = np.iinfo(np.int64).min
    for i in range(len(start)):
        window = start[i] // window_seconds
        low = min(low, window)
        high = max(high, window)
    span = high - low + 1
    if n_edges * span > limit:
        return np.zeros(0, np.int64)
    seen = np.zeros(n_edges * span, np.bool_)
    counts = np.zeros(n_edges, np.int64)
    for i in range(len(start)):
        cell = edge_id[i] * span + start[i] // window_seconds - low
        if not seen[cell]:
            seen[cell] = True
            counts[edge_id[i]] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def aggregate_edges(keys: np.ndarray, nbytes: np.ndarray, start: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group records by edge key (an open-addressing hash table; edges are few): (edge id per record, and per
    edge: key, records, bytes, first start, last start) — edges numbered in order of first appearance."""
    capacity = 1024
    slots = np.full(capacity, -1, np.int64)
    edge_keys = np.empty(capacity // 2, np.int64)
    n_edges = 0
    edge_id = np.empty(len(keys), np.int32)
    previous_key, previous_id = -1, -1  # consecutive records often share an edge
    for i in range(len(keys)):
        key = keys[i]
        if key == previous_key:
            edge_id[i] = previous_id
            continue
        slot = _slot(key, capacity)
        while slots[slot] >= 0 and edge_keys[slots[slot]] != key:
            slot = (slot + 1) & (capacity - 1)
        if slots[slot] < 0:
            if 2 * (n_edges + 1) > capacity:  # grow, and insert again
                capacity *= 2
                slots = np.full(capacity, -1, np.int64)
                grown = np.empty(capacity // 2, np.int64)
                grown[:n_edges] = edge_keys[:n_edges]
                edge_keys = grown
                for e in range(n_edges):
                    s = _slot(edge_keys[e], capacity)
                    while slots[s] >= 0:
                        s = (s + 1) & (capacity - 1)
                    slots[s] = e
                slot = _slot(key, capacity)
                while slots[slot] >= 0:
                    slot = (slot + 1) & (capacity - 1)
            slots[slot] = n_edges
            edge_keys[n_edges] = key
            n_edges += 1
        edge_id[i] = previous_id = slots[slot]
        previous_key = key
    records = np.zeros(n_edges, np.int64)
    total = np.zeros(n_edges, np.int64)
    first = np.full(n_edges, np.iinfo(np.int64).max, np.int64)
    last = np.full(n_edges, np.iinfo(np.int64).min, np.int64)
    for i in range(len(keys)):
        e = edge_id[i]
        records[e] += 1
        total[e] += nbytes[i]
        first[e] = min(first[e], start[i])
        last[e] = max(last[e], start[i])
    return edge_id, edge_keys[:n_edges].copy(), records, total, first, last


class RangeScanner:
    """Counters and narrow columns of the records of one byte range, block by block (the exact reader's rules)."""

    def __init__(self, layout: Layout, inventory: Inventory) -> None:
        if not {"srcaddr", "dstaddr"} <= layout.present:
            raise NeedsExactReader("a format without both addresses")
        self.layout = layout
        self.inventory = inventory
        self.addresses = AddressTable(inventory.ips)
        self.n_services = max(1, len(inventory.service_names()))
        self.partial = Partial()

    def scan(self, path: Path, begin: int, end: int, block_bytes: int = BLOCK_BYTES) -> Partial:
        buffer = np.zeros(block_bytes + 1 + 16, np.uint8)  # 16 more: word loads at a field's start stay inside
        words8 = np.ndarray((len(buffer) - 7,), np.uint64, buffer=buffer, strides=(1,))  # 8 bytes from each offset
        rows = block_bytes // max(1, len(self.layout.fields)) + 2  # a line has at least one byte per field
        ints = np.empty((rows, len(INTS)), np.int64)
        ends = np.empty((rows, 2), np.int64)
        words = np.empty((rows, 2), np.int8)
        ident = np.empty(rows if self.layout.identity else 0, np.uint64)
        positions = np.empty(block_bytes + 1, np.int32)
        carry = 0  # bytes of an unfinished line kept at the front of the block
        with open(path, "rb") as handle:
            handle.seek(begin)
            left = end - begin
            while left > 0 or carry:
                want = min(block_bytes - carry, left)
                got = handle.readinto(memoryview(buffer)[carry:carry + want]) if want > 0 else 0
                left -= got
                filled = carry + got
                if left <= 0 or got == 0:  # the range's last line may lack its newline
                    left = 0
                    if filled and buffer[filled - 1] != 10:
                        buffer[filled] = 10
                        filled += 1
                    cut = filled
                else:
                    newlines = np.flatnonzero(buffer[max(0, filled - (1 << 16)):filled] == 10)
                    cut = max(0, filled - (1 << 16)) + int(newlines[-1]) + 1 if len(newlines) else 0
                    if cut <= 0:
                        raise NeedsExactReader("a line longer than 64 KiB")
                lines = _decode(buffer, cut, len(self.layout.fields), self.layout.needed, self.layout.roles,
                                self.layout.int_defaults, self.layout.int_digits, self.addresses.bytes,
                                self.addresses.lengths, self.addresses.table, self.addresses.short, words8,
                                positions, ints, ends, words, self.layout.ident_fields, ident)
                if lines < 0:
                    raise NeedsExactReader("a line that is not plain (fields, comment, carriage return, value)")
                self.add(ints[:lines], ends[:lines], words[:lines], ident[:lines] if len(ident) else None)
                carry = filled - cut
                buffer[:carry] = buffer[cut:filled]
        return self.partial.finished()

    def add(self, ints: np.ndarray, ends: np.ndarray, words: np.ndarray, ident: np.ndarray | None = None) -> None:
        """The exact reader's per-batch rules (`flowlogs._Accumulator.add`) on a decoded block."""
        n, stats, present, at = len(ints), self.partial.stats, self.layout.present, self.layout.int_at
        if not n:
            return
        identity = None
        if ident is not None:
            identity = mix_identity(ident, [ints[:, at[name]] for name in IDENTITY_INTS])
            self.partial.seen.append(identity)
        stats["records"] += n
        starts = ints[:, at["start"]]
        keep = np.ones(n, bool)
        if "log-status" in present:  # NODATA/SKIPDATA; a missing status (-) is not held against the record
            nodata = words[:, 1] == OTHER
            stats["nodata"] += int(nodata.sum())
            keep &= ~nodata
        ports = ints[:, [at["srcport"], at["dstport"]]]  # -1 = "-" (no value)
        narrow(keep, ((ports >= -1) & (ports <= 65535)).all(axis=1) & (ints[:, at["bytes"]] >= 0), stats,
               "impossible")
        if "protocol" in present:
            protocol = ints[:, at["protocol"]]
            narrow(keep, (protocol == 6) | (protocol == 17), stats, "not_tcp_udp")
        codes = self.inventory.lookup_index(ends.T.reshape(-1), np.concatenate([starts, starts]))
        src, dst = codes[:n], codes[n:]
        narrow(keep, (src >= 0) & (dst >= 0), stats, "outside_inventory")
        narrow(keep, src != dst, stats, "same_service")
        if "action" in present:
            blocked = np.flatnonzero(keep & (words[:, 0] == REJECT))
            stats["rejected"] += len(blocked)
            if len(blocked):
                port = np.clip(ints[blocked, at["dstport"]], 0, 65535)
                self.partial.blocked.append((src[blocked].astype(np.int64) * self.n_services + dst[blocked])
                                            * 65536 + port)
            keep &= words[:, 0] == ACCEPT
        idx = np.flatnonzero(keep)
        rows = ints[idx]
        extra = {"ident": identity[idx]} if identity is not None else {}
        self.partial.add_columns(
            src=src[idx].astype(np.int32), dst=dst[idx].astype(np.int32),
            srcport=rows[:, at["srcport"]].astype(np.int32), dstport=rows[:, at["dstport"]].astype(np.int32),
            flags=rows[:, at["tcp-flags"]].astype(np.int16), nbytes=rows[:, at["bytes"]],
            start=rows[:, at["start"]], **extra)


def split_ranges(path: Path, begin: int, parts: int) -> list[tuple[int, int]]:
    """[begin, size) cut into `parts` newline-aligned byte ranges."""
    size = path.stat().st_size
    bounds = [begin]
    with open(path, "rb") as handle:
        for i in range(1, parts):
            handle.seek(max(bounds[-1], begin + (size - begin) * i // parts))
            tail = handle.read(1 << 20)
            newline = tail.find(b"\n")
            if newline < 0:
                break
            bounds.append(handle.tell() - len(tail) + newline + 1)
    bounds.append(size)
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def scan_file(path: Path, fields: list[str], begin: int, inventory: Inventory, workers: int = 1,
              identity: bool = False) -> list[Partial]:
    """Partials of the records from byte `begin` (after any header) on; NeedsExactReader when unsure. With
    `identity` (and a format holding the identity fields), each record's identity too (`mix_identity`).

    With ``workers > 1`` and a large file, newline-aligned byte ranges are read by that many threads (the
    compiled kernels run without the GIL; numpy releases it for the block-wide steps).
    """
    layout = Layout(fields, identity)
    size = path.stat().st_size
    parts = workers if workers > 1 and size - begin >= PARALLEL_MIN_BYTES else 1
    ranges = split_ranges(path, begin, parts)
    if len(ranges) <= 1:
        return [RangeScanner(layout, inventory).scan(path, *ranges[0])] if ranges else []
    with ThreadPoolExecutor(max_workers=len(ranges) - 1) as pool:
        others = [pool.submit(RangeScanner(layout, inventory).scan, path, a, b) for a, b in ranges[1:]]
        first = RangeScanner(layout, inventory).scan(path, *ranges[0])
        return [first] + [future.result() for future in others]
