"""Seeded, realistic Twilio Flex contact-centre traffic as Segment messages.

Why a simulation and not random rows: the predictions need signal to learn (people who go quiet,
people who buy more than others), identity resolution needs the mess real traffic has (anonymous
visitors who identify later, shared devices, mixed-case emails, phones in several spellings), and
ingest needs the faults real pipes carry (late events, re-sent messages, broken lines).

The model, per person:

- an activity rate drawn from a gamma distribution (heavy tailed: a few people generate much of
  the traffic) and a lifetime drawn from an exponential with a person-specific dropout rate (a
  Pareto/NBD-like "buy till you die" process), so recency *and* frequency predict churn;
- a mix over kinds of activity (site/app visits, contact-centre engagements, orders, profile
  updates), a propensity to call in rather than be called, a favourite channel and agent, a mood;
- a mean order value drawn from a gamma distribution, each order's revenue gamma around it
  (Gamma-Gamma), so lifetime value is heterogeneous and learnable;
- one to three devices (web, iOS or Android), each with its own anonymous id; a few people share
  a device, an email or a phone with another person, so identity limits are exercised.

Everything is vectorised with NumPy (the simulation) and Polars (rendering the JSON text in
chunks); the bytes depend only on the arguments. Cosmetic choices (email casing, phone spelling,
how ``duration`` is sent) come from a counter-based hash of the event's key, so a re-sent message
renders byte-identically wherever it lands in the file.

Examples
--------
>>> events = list(generate_events(300, seed=1))
>>> len(events)
300
>>> sum(isinstance(e, str) for e in events) > 0     # malformed raw lines
True
"""

from __future__ import annotations

import argparse
import binascii
import gzip as gzip_module
import io
import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
EVENTS_PER_PERSON = 10
CHUNK_ROWS = 100_000

MS_PER_DAY = 86_400_000

# Kinds of rows in the file.
PAGE, SCREEN, IDENTIFY, ENG_INIT, ENG_DONE, ORDER, GROUP, ALIAS, MALFORMED = range(9)

# Shares of faults and oddities.
SHARE_DUPLICATES = 0.003
SHARE_LATE = 0.01
SHARE_ANONYMOUS_PEOPLE = 0.25
SHARE_SHARED_DEVICE = 0.002
SHARE_SHARED_EMAIL = 0.0005
SHARE_SHARED_PHONE = 0.001
COMPLETION_RATE = 0.8
# How a timestamp is sent (by a uniform draw per message): ISO "Z" below TS_ISO_UTC, ISO with a
# +02:00 offset below TS_ISO_OFFSET, else epoch milliseconds; client messages at or above
# TS_MISSING send no timestamp (originalTimestamp/sentAt/receivedAt instead).
TS_ISO_UTC, TS_ISO_OFFSET, TS_MISSING = 0.97, 0.985, 0.992

ENGAGEMENT_INITIATED = "Flex - Engagement Initiated"
ENGAGEMENT_COMPLETED = "Flex - Engagement Completed"
ORDER_COMPLETED = "Order Completed"

CHANNELS = ("voice", "chat", "sms", "email", "whatsapp", "video")
CHANNEL_SHARES = np.array([0.40, 0.25, 0.15, 0.10, 0.07, 0.03])
CHANNEL_MEDIAN_SECONDS = np.array([240.0, 540.0, 900.0, 3600.0, 700.0, 420.0])
SENTIMENTS = ("positive", "neutral", "negative")
DIRECTIONS = ("Inbound", "Outbound")
PLANS = ("free", "basic", "pro", "enterprise")
DEVICE_KINDS = ("web", "ios", "android")
PAGES = (
    ("Home", "/"),
    ("Pricing", "/pricing"),
    ("Help Center", "/help"),
    ("Contact Us", "/contact"),
    ("Order Status", "/orders"),
    ("Account", "/account"),
    ("Checkout", "/checkout"),
    ("Über uns", "/de/ueber-uns"),
    ("Centre d’aide", "/fr/aide"),
    ("お問い合わせ", "/ja/contact"),
    ("Blog — Tips ✨", "/blog/tips"),
)
SCREENS = ("Home", "Orders", "Support Chat", "Profile", "Settings", "Cart", "Ofertas ñ")
FIRST_NAMES = (
    ("José", "jose"), ("Zoë", "zoe"), ("Łukasz", "lukasz"), ("Søren", "soren"), ("Aoife", "aoife"),
    ("Chloé", "chloe"), ("Mateo", "mateo"), ("Ana", "ana"), ("Björn", "bjorn"), ("Noémie", "noemie"),
    ("İlker", "ilker"), ("Priya", "priya"), ("Wei", "wei"), ("Olivia", "olivia"), ("Liam", "liam"),
    ("Fatima", "fatima"), ("Kenji", "kenji"), ("Amara", "amara"), ("Noah", "noah"), ("Emma", "emma"),
    ("Lucía", "lucia"), ("Mohammed", "mohammed"), ("Sofia", "sofia"), ("Jürgen", "jurgen"),
)
LAST_NAMES = (
    ("García", "garcia"), ("Müller", "muller"), ("Nowak", "nowak"), ("Ødegaard", "odegaard"),
    ("O'Connor", "oconnor"), ("Smith", "smith"), ("Nguyễn", "nguyen"), ("Rossi", "rossi"),
    ("Dubois", "dubois"), ("Kowalski", "kowalski"), ("Silva", "silva"), ("Tanaka", "tanaka"),
    ("Johnson", "johnson"), ("Brown", "brown"), ("Patel", "patel"), ("Li", "li"), ("Çelik", "celik"),
    ("Jensen", "jensen"), ("Fernández", "fernandez"), ("Okafor", "okafor"),
)
EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "web.de", "icloud.com")
PHONE_COUNTRIES = (("1", 0.70), ("44", 0.15), ("49", 0.10), ("55", 0.05))
COMPANIES = ("Acme Corp", "Globex", "Initech", "Umbrella", "Société Générale d’Essai", "Tyrell")

# Salts of the counter-based hash, one per independent cosmetic choice.
_H_MESSAGE_A, _H_MESSAGE_B, _H_ANON_A, _H_ANON_B, _H_DEVICE, _H_ADID_A, _H_ADID_B = range(1, 8)
_H_ADTRACK, _H_USERID_NUM, _H_TS_FORM, _H_TS_SKEW, _H_DURATION_FORM, _H_EMAIL_CASE = range(8, 14)
_H_PHONE_FORM, _H_CTX_PHONE, _H_CTX_EMAIL, _H_SENTIMENT_FORM, _H_REVENUE_FORM = range(14, 19)
_H_COUNTRY, _H_LOGGED_OUT, _H_ORDER_ID, _H_PHONE_PRESENT, _H_BLOCKED, _H_AGENT = range(19, 25)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-mixed bijection on uint64 (wrapping arithmetic)."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def _hash(seed: int, salt: int, key: np.ndarray) -> np.ndarray:
    """A uint64 per key, independent across salts and seeds, identical wherever the key appears."""
    with np.errstate(over="ignore"):
        base = _mix64(np.array([seed * 1_000_003 + salt], dtype=np.uint64))[0]
        return _mix64(key.astype(np.uint64) * _GOLDEN + base)


def _uniform(seed: int, salt: int, key: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from :func:`_hash` (53 high bits)."""
    return (_hash(seed, salt, key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _fixed_width(chars: np.ndarray) -> pl.Series:
    """An ``(n, w)`` uint8 array of ASCII -> a Polars string Series, without a Python loop.

    The bytes become the data buffer of an Arrow string array; this is ~10x faster than
    ``strftime`` or per-value formatting, which dominated the generator's time.
    """
    n, width = chars.shape
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    strings = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data.tobytes()))
    return pl.Series(pl.from_arrow(strings))


def _hex_chars(values: np.ndarray, *, upper: bool = False) -> np.ndarray:
    """uint64 -> ``(n, 16)`` hex digit bytes (``binascii`` does the work in C)."""
    raw = binascii.hexlify(values.astype(">u8").tobytes())
    return np.frombuffer(raw.upper() if upper else raw, dtype=np.uint8).reshape(-1, 16)


def _hex(values: np.ndarray) -> pl.Series:
    """uint64 -> 16 lower-case hex digits."""
    return _fixed_width(_hex_chars(values))


def _uuid(a: np.ndarray, b: np.ndarray, *, upper: bool = False) -> pl.Series:
    """Two uint64 -> a UUID-shaped string (8-4-4-4-12 hex digits)."""
    ha, hb = _hex_chars(a, upper=upper), _hex_chars(b, upper=upper)
    dash = np.full((len(a), 1), ord("-"), dtype=np.uint8)
    return _fixed_width(
        np.hstack([ha[:, 0:8], dash, ha[:, 8:12], dash, ha[:, 12:16], dash, hb[:, 0:4], dash, hb[:, 4:16]])
    )


def _digit_table(count: int, width: int) -> np.ndarray:
    """``(count, width)`` zero-padded decimal digits of 0..count-1."""
    values = np.arange(count)
    return np.stack([48 + (values // 10**i) % 10 for i in range(width - 1, -1, -1)], axis=1).astype(np.uint8)


_MILLIS = _digit_table(1000, 3)
_TWO = _digit_table(100, 2)
_CLOCK = np.hstack(  # "HH:MM:SS" for every second of a day
    [
        _TWO[np.arange(86_400) // 3600],
        np.full((86_400, 1), ord(":"), np.uint8),
        _TWO[(np.arange(86_400) // 60) % 60],
        np.full((86_400, 1), ord(":"), np.uint8),
        _TWO[np.arange(86_400) % 60],
    ]
)


def _iso(ms: np.ndarray, *, offset_hours: int = 0) -> pl.Series:
    """Epoch milliseconds -> ``2025-01-01T00:00:00.000Z`` (or ``...+02:00`` for an offset).

    Table look-ups of the date, the clock time and the milliseconds: ~10x faster than
    ``strftime``, which dominated the generator's time.
    """
    local = ms.astype(np.int64) + offset_hours * 3_600_000
    seconds, millis = np.divmod(local, 1000)
    days, clock = np.divmod(seconds, 86_400)
    suffix = b"Z" if offset_hours == 0 else f"{offset_hours:+03d}:00".encode()
    n = len(ms)
    if n:
        first = int(days.min())
        dates = np.datetime_as_string(
            np.arange(first, int(days.max()) + 1).astype("datetime64[D]"), unit="D"
        ).astype("S10").view(np.uint8).reshape(-1, 10)[days - first]
    else:
        dates = np.empty((0, 10), np.uint8)
    return _fixed_width(
        np.hstack(
            [
                dates,
                np.full((n, 1), ord("T"), np.uint8),
                _CLOCK[clock],
                np.full((n, 1), ord("."), np.uint8),
                _MILLIS[millis],
                np.broadcast_to(np.frombuffer(suffix, np.uint8), (n, len(suffix))),
            ]
        )
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _People:
    """Per-person parameters (arrays of length ``n``)."""

    n: int
    known: np.ndarray  # bool: ever identifies
    birth: np.ndarray  # int64 ms
    alive_end: np.ndarray  # int64 ms: death or the end of the data
    user_num: np.ndarray  # int64: userId digits
    first: np.ndarray  # int16 index into FIRST_NAMES
    last: np.ndarray  # int16 index into LAST_NAMES
    email_owner: np.ndarray  # int32: whose email this person uses (self, or a housemate)
    phone_owner: np.ndarray  # int32
    n_devices: np.ndarray  # int8
    slot_owner: np.ndarray  # int32 [n, 3]: whose device sits in this slot
    slot_src: np.ndarray  # int8 [n, 3]: which slot of the owner
    slot_kind: np.ndarray  # int8 [n, 3]: index into DEVICE_KINDS
    plan: np.ndarray  # int8
    group: np.ndarray  # int32: account id


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """The simulated rows in file order plus what is needed to render them."""

    seed: int
    start_ms: int
    end_ms: int
    people: _People
    # per unit of activity (an engagement renders as two rows sharing its unit)
    unit_direction: np.ndarray  # int8
    unit_channel: np.ndarray  # int8
    unit_agent: np.ndarray  # int32
    unit_duration: np.ndarray  # float32 seconds
    unit_sentiment: np.ndarray  # int8
    unit_revenue: np.ndarray  # float32
    unit_page: np.ndarray  # int8
    n_agents: int
    # per row, in file order
    key: np.ndarray  # int64: unit * 2 + (1 for a completion); -1 - k for malformed row k
    unit: np.ndarray  # int64
    person: np.ndarray  # int32
    kind: np.ndarray  # int8
    slot: np.ndarray  # int8
    anonymous: np.ndarray  # bool: sent before the person identified (no userId)
    ts: np.ndarray  # int64 ms: event time
    recv: np.ndarray  # int64 ms: receivedAt (a re-sent copy keeps the original's: byte-identical)


def _resolve_start(start: datetime | None) -> int:
    start = DEFAULT_START if start is None else start
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return int(start.timestamp() * 1000)


def _counts(n_events: int, malformed: bool) -> tuple[int, int, int]:
    """(core, duplicates, malformed) rows adding up to exactly ``n_events``."""
    n_mal = min(max(n_events // 2000, 8), n_events // 4) if malformed else 0
    n_dup = int(n_events * SHARE_DUPLICATES)
    return n_events - n_mal - n_dup, n_dup, n_mal


def _people(rng: np.random.Generator, n: int, start_ms: int, end_ms: int) -> tuple[_People, dict[str, np.ndarray]]:
    """Draw the population; returns the identity side and the behavioural parameters."""
    span = end_ms - start_ms
    known = rng.random(n) >= SHARE_ANONYMOUS_PEOPLE
    # A quarter were already customers when the data starts; the rest arrive uniformly.
    birth = np.where(rng.random(n) < 0.25, 0.0, rng.random(n) * span).astype(np.int64) + start_ms
    dropout_per_day = rng.gamma(1.5, 1.0 / (1.5 * 240.0), n)  # mean lifetime ~240 days
    life_ms = (rng.exponential(1.0, n) / dropout_per_day * MS_PER_DAY).astype(np.int64)
    alive_end = np.minimum(birth + life_ms, end_ms)
    rate = rng.gamma(0.7, 1.0, n)  # heavy-tailed activity
    rate = np.where(known, rate, rate * 0.4)  # drive-by visitors are less active

    user_num = 100_000 + rng.permutation(n).astype(np.int64)
    first = rng.integers(0, len(FIRST_NAMES), n).astype(np.int16)
    last = rng.integers(0, len(LAST_NAMES), n).astype(np.int16)
    idx = np.arange(n, dtype=np.int32)
    known_idx = np.flatnonzero(known)

    def housemates(share: float) -> np.ndarray:
        owner = idx.copy()
        k = int(round(len(known_idx) * share))
        if k and len(known_idx) > 1:
            who = rng.choice(known_idx, k, replace=False)
            partner = rng.choice(known_idx, k)
            ok = partner != who
            owner[who[ok]] = partner[ok]
        return owner

    email_owner = housemates(SHARE_SHARED_EMAIL)
    phone_owner = housemates(SHARE_SHARED_PHONE)

    n_devices = rng.choice(np.array([1, 2, 3], dtype=np.int8), n, p=[0.55, 0.33, 0.12])
    n_devices = np.where(known, n_devices, 1).astype(np.int8)
    mobile = np.where(rng.random(n) < 0.55, 1, 2).astype(np.int8)  # ios or android person
    slot_kind = np.empty((n, 3), dtype=np.int8)
    slot_kind[:, 0] = np.where(rng.random(n) < 0.6, 0, mobile)
    slot_kind[:, 1] = np.where(slot_kind[:, 0] == 0, mobile, 0)
    slot_kind[:, 2] = np.where(rng.random(n) < 0.5, 0, mobile)
    slot_kind[~known, 0] = 0  # anonymous visitors browse the web site
    slot_owner = np.repeat(idx[:, None], 3, axis=1)
    slot_src = np.repeat(np.arange(3, dtype=np.int8)[None, :], n, axis=0)
    # Shared devices: a family tablet, a shop's kiosk. The second person's last slot is the
    # first person's first device (same anonymous id, same device id).
    k = int(round(len(known_idx) * SHARE_SHARED_DEVICE))
    if k and len(known_idx) > 1:
        who = rng.choice(known_idx, k, replace=False)
        partner = rng.choice(known_idx, k)
        ok = partner != who
        who, partner = who[ok], partner[ok]
        s = n_devices[who] - 1
        slot_owner[who, s] = partner
        slot_src[who, s] = 0
        slot_kind[who, s] = slot_kind[partner, 0]

    plan = rng.choice(np.arange(len(PLANS), dtype=np.int8), n, p=[0.4, 0.3, 0.2, 0.1])
    group = rng.integers(0, max(1, n // 50), n).astype(np.int32)

    # Behaviour: what kind of activity, and its flavour.
    mix_alpha = np.array([3.0, 2.0, 0.7, 0.15])  # visit, engagement, order, identify update
    mix = rng.gamma(np.broadcast_to(mix_alpha, (n, 4)), 1.0)
    mix /= mix.sum(axis=1, keepdims=True)
    behaviour = {
        "rate": rate,
        "mix_cum": np.cumsum(mix, axis=1)[:, :3].astype(np.float32),
        "p_inbound": rng.beta(4.0, 2.0, n).astype(np.float32),
        "fav_channel": rng.choice(np.arange(len(CHANNELS), dtype=np.int8), n, p=CHANNEL_SHARES),
        "mood": rng.choice(np.arange(3, dtype=np.int8), n, p=[0.5, 0.3, 0.2]),
        "spend": rng.gamma(2.5, 30.0, n).astype(np.float32),  # mean order value ~75
        "first_identify_rank": np.floor(rng.exponential(1.2, n)).astype(np.int64),
    }
    people = _People(
        n=n, known=known, birth=birth, alive_end=alive_end, user_num=user_num, first=first,
        last=last, email_owner=email_owner, phone_owner=phone_owner, n_devices=n_devices,
        slot_owner=slot_owner, slot_src=slot_src, slot_kind=slot_kind, plan=plan, group=group,
    )
    return people, behaviour


def _simulate(n_events: int, *, seed: int, start_ms: int, days: int, malformed: bool) -> _Plan:
    """Draw people and their activity; order rows as a collector would receive them."""
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    end_ms = start_ms + days * MS_PER_DAY
    n_core, n_dup, n_mal = _counts(n_events, malformed)
    rng = np.random.default_rng([seed, 20250101])
    n_people = max(3, round(n_core / EVENTS_PER_PERSON))
    people, bh = _people(rng, n_people, start_ms, end_ms)
    n_agents = max(20, n_people // 200)
    agent_of = rng.integers(0, n_agents, n_people).astype(np.int32)

    weight = bh["rate"] * np.maximum(people.alive_end - people.birth, 1) / MS_PER_DAY
    cum_weight = np.cumsum(weight)
    expected_share = float((bh["mix_cum"][:, 1] - bh["mix_cum"][:, 0]) @ weight / cum_weight[-1])
    # The mix overstates engagements (early visits are forced to anonymous page views), so draw
    # 10% more units than needed: a retry would cost a whole second simulation.
    n_units = int(n_core / (1.0 + COMPLETION_RATE * expected_share) * 1.10) + 16
    time_bits = int(end_ms - start_ms).bit_length()
    while True:
        person = np.searchsorted(cum_weight, rng.random(n_units) * cum_weight[-1], side="right")
        person = np.minimum(person, n_people - 1).astype(np.int32)
        life = people.alive_end[person] - people.birth[person]
        ts = people.birth[person] + (rng.random(n_units) * life).astype(np.int64)
        if time_bits + int(n_people).bit_length() < 63:  # one int64 sort key: ~3x faster than lexsort
            order = np.argsort((person.astype(np.int64) << time_bits) | (ts - start_ms), kind="stable")
        else:
            order = np.lexsort((ts, person))
        person, ts = person[order], ts[order]
        group_start = np.searchsorted(person, np.arange(n_people), side="left")
        rank = np.arange(n_units) - group_start[person]

        known = people.known[person]
        first_id = bh["first_identify_rank"][person]
        u = rng.random(n_units).astype(np.float32)
        mc = bh["mix_cum"]
        choice = (
            (u >= mc[person, 0]).astype(np.int8)
            + (u >= mc[person, 1]).astype(np.int8)
            + (u >= mc[person, 2]).astype(np.int8)
        )
        kind = np.choose(choice, np.array([PAGE, ENG_INIT, ORDER, IDENTIFY], dtype=np.int8))
        rare = rng.random(n_units)
        kind = np.where(rare < 0.003, GROUP, np.where(rare < 0.005, ALIAS, kind)).astype(np.int8)
        anonymous = ~known | (rank < first_id)
        kind[anonymous] = PAGE
        kind[known & (rank == first_id)] = IDENTIFY
        del order, life, rank, known, first_id, u, choice, rare  # peak memory: ~200 bytes/row
        slot = np.floor(rng.random(n_units) * people.n_devices[person]).astype(np.int8)
        device_kind = people.slot_kind[person, slot]
        visit = kind == PAGE
        kind[visit & (device_kind != 0)] = SCREEN

        # Engagement attributes, drawn per unit (both rows of an engagement share them).
        direction = (rng.random(n_units) >= bh["p_inbound"][person]).astype(np.int8)
        channel = np.where(
            rng.random(n_units) < 0.65,
            bh["fav_channel"][person],
            rng.choice(np.arange(len(CHANNELS), dtype=np.int8), n_units, p=CHANNEL_SHARES),
        ).astype(np.int8)
        agent = np.where(
            rng.random(n_units) < 0.4, agent_of[person], rng.integers(0, n_agents, n_units)
        ).astype(np.int32)
        duration = np.round(
            CHANNEL_MEDIAN_SECONDS[channel] * rng.lognormal(0.0, 0.8, n_units)
        ).astype(np.float32) + 1
        sentiment = np.where(
            rng.random(n_units) < 0.6, bh["mood"][person], rng.integers(0, 3, n_units)
        ).astype(np.int8)
        revenue = np.round(
            rng.gamma(5.0, 1.0, n_units) * bh["spend"][person] / 5.0 + 0.99, 2
        ).astype(np.float32)
        page = rng.integers(0, max(len(PAGES), len(SCREENS)), n_units).astype(np.int8)
        done_ts = ts + (duration.astype(np.int64) + rng.integers(5, 120, n_units)) * 1000
        completed = (kind == ENG_INIT) & (rng.random(n_units) < COMPLETION_RATE) & (done_ts < end_ms)
        total = n_units + int(completed.sum())
        if total >= n_core:
            break
        n_units = int(n_units * 1.1) + 16

    # Drop whole random units (identifies last, only for tiny outputs) until exactly n_core rows
    # remain; if the last dropped unit is an engagement one row too many, drop only its completion.
    surplus = total - n_core
    keep = np.ones(n_units, dtype=bool)
    if surplus:
        candidates = np.concatenate(
            [rng.permutation(np.flatnonzero(kind != IDENTIFY)), rng.permutation(np.flatnonzero(kind == IDENTIFY))]
        )
        sizes = 1 + completed[candidates].astype(np.int64)
        cut = int(np.searchsorted(np.cumsum(sizes), surplus, side="left"))
        dropped = candidates[: cut + 1]
        if int(sizes[: cut + 1].sum()) > surplus:
            completed[candidates[cut]] = False
            dropped = candidates[:cut]
        keep[dropped] = False
    units = np.flatnonzero(keep)
    done_units = np.flatnonzero(keep & completed)

    row_unit = np.concatenate([units, done_units]).astype(np.int64)
    row_done = np.concatenate([np.zeros(len(units), bool), np.ones(len(done_units), bool)])
    row_kind = np.concatenate([kind[units], np.full(len(done_units), ENG_DONE, np.int8)])
    row_ts = np.concatenate([ts[units], done_ts[done_units]])
    row_person = person[row_unit]
    row_slot = slot[row_unit]
    row_anon = anonymous[row_unit]
    row_key = row_unit * 2 + row_done
    assert len(row_key) == n_core
    del person, ts, kind, slot, anonymous, done_ts, completed, keep, units, done_units

    client = np.isin(row_kind, (PAGE, SCREEN, IDENTIFY, ALIAS, GROUP))
    latency = np.where(client, rng.exponential(1500.0, n_core), rng.exponential(150.0, n_core))
    late = rng.random(n_core) < SHARE_LATE
    delay = np.where(late, 3_600_000 + rng.exponential(1.5 * MS_PER_DAY, n_core), 0.0)
    row_recv = row_ts + 1 + (latency + delay).astype(np.int64)
    del client, latency, late, delay

    # Re-sent messages: byte-identical copies arriving seconds to hours later.
    dup_src = rng.choice(n_core, n_dup, replace=False) if n_dup else np.empty(0, np.int64)
    dup_recv = row_recv[dup_src] + 1000 + rng.exponential(1_200_000.0, n_dup).astype(np.int64)
    mal_recv = start_ms + (rng.random(n_mal) * (end_ms - start_ms)).astype(np.int64)

    src = np.concatenate([np.arange(n_core), dup_src, np.zeros(n_mal, np.int64)])
    order_key = np.concatenate([row_recv, dup_recv, mal_recv])
    file_order = np.argsort(order_key, kind="stable")
    src = src[file_order]
    is_mal = file_order >= n_core + n_dup
    mal_key = -1 - (file_order[is_mal] - (n_core + n_dup))

    def take(values: np.ndarray, fill: Any) -> np.ndarray:
        out = values[src]
        out[is_mal] = fill
        return out

    key = take(row_key, 0)
    key[is_mal] = mal_key
    del order_key, file_order, row_key, dup_recv, mal_recv
    return _Plan(
        seed=seed, start_ms=start_ms, end_ms=end_ms, people=people,
        unit_direction=direction, unit_channel=channel, unit_agent=agent,
        unit_duration=duration, unit_sentiment=sentiment, unit_revenue=revenue, unit_page=page,
        n_agents=n_agents,
        key=key, unit=take(row_unit, 0), person=take(row_person, 0),
        kind=take(row_kind, MALFORMED), slot=take(row_slot, 0), anonymous=take(row_anon, False),
        ts=take(row_ts, start_ms), recv=take(row_recv, start_ms),
    )


# ----------------------------------------------------------------------------- rendering


def _when(cond: pl.Expr, value: pl.Expr) -> pl.Expr:
    return pl.when(cond).then(value).otherwise(pl.lit(None, dtype=pl.String))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spellings:
    """Every way each person's identifiers are written, built once per run and gathered per row.

    Gathering precomputed strings is much cheaper than formatting them again for every event.
    """

    emails: pl.Series  # index: case variant * n + owner
    phones: pl.Series  # index: format variant * n + owner
    names: pl.Series  # display name per person
    agents: pl.Series  # "WK" + 32 hex digits per agent


_EMAIL_CASE_CUTS = np.array([0.7, 0.9])
_PHONE_FORM_CUTS = np.array([0.35, 0.55, 0.70, 0.82, 0.92])


def _spellings(plan: _Plan) -> _Spellings:
    pp, seed = plan.people, plan.seed
    owner = np.arange(pp.n)
    email = (
        pl.Series([a for _, a in FIRST_NAMES]).gather(pp.first)
        + "."
        + pl.Series([a for _, a in LAST_NAMES]).gather(pp.last)
        + pl.Series(owner).cast(pl.String)
        + "@"
        + pl.Series(list(EMAIL_DOMAINS)).gather(owner % len(EMAIL_DOMAINS))
    )
    emails = pl.concat([email, email.str.to_titlecase(), email.str.to_uppercase()])

    cc_cut = np.cumsum([share for _, share in PHONE_COUNTRIES])
    cc_draw = _uniform(seed, _H_COUNTRY, owner.astype(np.uint64))
    cc_idx = np.searchsorted(cc_cut, cc_draw * cc_cut[-1], side="right").clip(0, len(PHONE_COUNTRIES) - 1)
    plus_cc = "+" + pl.Series([c for c, _ in PHONE_COUNTRIES]).gather(cc_idx)
    # A bijection of the owner (a multiplier coprime to 7e9): no two people share a number by chance.
    national = pl.Series(2_000_000_000 + (owner.astype(np.int64) * 1_000_003 + 12_345) % 7_000_000_000)
    nat = national.cast(pl.String)
    a3, b3, c4 = nat.str.slice(0, 3), nat.str.slice(3, 3), nat.str.slice(6, 4)
    phones = pl.concat(
        [
            plus_cc + nat,                                       # +14155550123
            plus_cc + " " + a3 + " " + b3 + " " + c4,            # +1 415 555 0123
            plus_cc + "-" + a3 + "-" + b3 + "-" + c4,            # +1-415-555-0123
            plus_cc + " (" + a3 + ") " + b3 + "-" + c4,          # +1 (415) 555-0123
            plus_cc + "." + a3 + "." + b3 + "." + c4,            # +1.415.555.0123
            "(" + a3 + ") " + b3 + "-" + c4,                     # (415) 555-0123: no country code
        ]
    )
    names = (
        pl.Series([f for f, _ in FIRST_NAMES]).gather(pp.first)
        + " "
        + pl.Series([f for f, _ in LAST_NAMES]).gather(pp.last)
    )
    agent_ids = np.arange(plan.n_agents, dtype=np.uint64)
    agents = "WK" + _hex(_hash(seed, _H_AGENT, agent_ids)) + _hex(_hash(seed, _H_AGENT + 100, agent_ids))
    return _Spellings(emails=emails, phones=phones, names=names, agents=agents)


def _sparse(values: pl.Series, rows: np.ndarray, n: int) -> pl.Series:
    """A length-``n`` string column: ``values`` at ``rows``, null elsewhere."""
    return pl.Series(values.name, [None] * 0, dtype=pl.String).extend_constant(None, n).scatter(rows, values)


def _strings(options: tuple[str, ...] | list[str], index: np.ndarray) -> pl.Series:
    return pl.Series(list(options), dtype=pl.String).gather(index.astype(np.int64))


def _chunk_frame(plan: _Plan, sp: _Spellings, lo: int, hi: int) -> pl.DataFrame:
    """The columns of rows ``lo:hi`` (file order), before JSON rendering."""
    seed, pp = plan.seed, plan.people
    n = pp.n
    key = plan.key[lo:hi]
    person = plan.person[lo:hi]
    slot = plan.slot[lo:hi].astype(np.intp)
    unit = plan.unit[lo:hi]
    ukey = key.astype(np.uint64)
    owner = pp.slot_owner[person, slot].astype(np.uint64)
    src = pp.slot_src[person, slot].astype(np.uint64)
    device_key = owner * np.uint64(4) + src
    device_kind = pp.slot_kind[person, slot]

    def u(salt: int) -> np.ndarray:
        return _uniform(seed, salt, ukey)

    ts, recv = plan.ts[lo:hi], plan.recv[lo:hi]
    # A device clock off by up to two hours, for the messages sent without a timestamp.
    skew = ((u(_H_TS_SKEW) - 0.5) * 4 * 3_600_000).astype(np.int64)
    ts_form = u(_H_TS_FORM)
    # Only the few rows that need them get the rarer spellings formatted.
    offset = np.flatnonzero((ts_form >= TS_ISO_UTC) & (ts_form < TS_ISO_OFFSET))
    no_ts = np.flatnonzero(ts_form >= TS_MISSING)
    email_case = np.searchsorted(_EMAIL_CASE_CUTS, u(_H_EMAIL_CASE), side="right")
    phone_form = np.searchsorted(_PHONE_FORM_CUTS, u(_H_PHONE_FORM), side="right")
    phone = sp.phones.gather(phone_form * n + pp.phone_owner[person])
    duration = plan.unit_duration[unit]
    page = plan.unit_page[unit].astype(np.int64)

    return pl.DataFrame(
        {
            "key": key,
            "kind": plan.kind[lo:hi],
            "ts": ts,
            "recv": recv,
            "anonymous": plan.anonymous[lo:hi],
            "user_num": pp.user_num[person],
            "display_name": sp.names.gather(person),
            "email": sp.emails.gather(email_case * n + pp.email_owner[person]),
            "phone": phone,
            # A few contact-centre records carry a placeholder instead of a phone (blocked).
            "phone_ctx": phone.clone().scatter(np.flatnonzero(u(_H_BLOCKED) < 0.004), "n/a"),
            "plan": _strings(PLANS, pp.plan[person]),
            "group": pp.group[person],
            "device_kind": device_kind,
            "device_type": _strings(DEVICE_KINDS, device_kind),
            "library": _strings(("analytics.js", "analytics-ios", "analytics-android"), device_kind),
            "anonymous_id": _uuid(_hash(seed, _H_ANON_A, device_key), _hash(seed, _H_ANON_B, device_key)),
            "device_id": _hex(_hash(seed, _H_DEVICE, device_key)),
            "adid": _uuid(
                _hash(seed, _H_ADID_A, device_key), _hash(seed, _H_ADID_B, device_key), upper=True
            ),
            "ad_tracking": _uniform(seed, _H_ADTRACK, device_key) < 0.75,
            "message_id": _uuid(_hash(seed, _H_MESSAGE_A, ukey), _hash(seed, _H_MESSAGE_B, ukey)),
            "ts_iso": _iso(ts),
            "ts_offset_iso": _sparse(_iso(ts[offset], offset_hours=2), offset, len(ts)),
            "recv_iso": _iso(recv),
            "original_iso": _sparse(_iso(ts[no_ts] + skew[no_ts]), no_ts, len(ts)),
            "sent_iso": _sparse(_iso(recv[no_ts] + skew[no_ts]), no_ts, len(ts)),
            "order_id": _hex(_hash(seed, _H_ORDER_ID, ukey)),
            "direction": _strings(DIRECTIONS, plan.unit_direction[unit]),
            "channel": _strings(CHANNELS, plan.unit_channel[unit]),
            "agent": sp.agents.gather(plan.unit_agent[unit].astype(np.int64)),
            "duration": duration,
            "duration_int": pl.Series(duration.astype(np.int64)).cast(pl.String),
            "duration_dec": pl.Series(duration.astype(np.float64) + 0.5).cast(pl.String),
            "sentiment": _strings(SENTIMENTS, plan.unit_sentiment[unit]),
            "revenue": plan.unit_revenue[unit],
            "page_name": _strings([p for p, _ in PAGES], page % len(PAGES)),
            "page_path": _strings([p for _, p in PAGES], page % len(PAGES)),
            "screen_name": _strings(SCREENS, page % len(SCREENS)),
            "company": _strings(COMPANIES, pp.group[person] % len(COMPANIES)),
            "u_userid_num": u(_H_USERID_NUM),
            "u_ts_form": ts_form,
            "u_duration": u(_H_DURATION_FORM),
            "u_ctx_phone": u(_H_CTX_PHONE),
            "u_ctx_email": u(_H_CTX_EMAIL),
            "u_sentiment": u(_H_SENTIMENT_FORM),
            "u_revenue": u(_H_REVENUE_FORM),
            "u_logged_out": u(_H_LOGGED_OUT),
            "u_phone_present": u(_H_PHONE_PRESENT),
        }
    )


_NULL = pl.lit(None, dtype=pl.String)
_TYPE_NAMES = {
    PAGE: "page", SCREEN: "screen", IDENTIFY: "identify", ENG_INIT: "track", ENG_DONE: "track",
    ORDER: "track", GROUP: "group", ALIAS: "alias",
}
_EVENT_NAMES = {ENG_INIT: ENGAGEMENT_INITIATED, ENG_DONE: ENGAGEMENT_COMPLETED, ORDER: ORDER_COMPLETED}
_CLIENT = (PAGE, SCREEN, IDENTIFY, GROUP, ALIAS)


Part = str | pl.Expr


def _concat(parts: list[Part]) -> pl.Expr:
    """One ``concat_str`` over literal text and string expressions; null parts are skipped.

    A line is one flat concatenation (not nested ones per field): each nesting level would
    allocate every row's text again.
    """
    exprs: list[pl.Expr] = []
    text = ""
    for part in parts:
        if isinstance(part, str):
            text += part
            continue
        if text:
            exprs.append(pl.lit(text))
            text = ""
        exprs.append(part)
    if text:
        exprs.append(pl.lit(text))
    return pl.concat_str(exprs, ignore_nulls=True)


def _opt(cond: pl.Expr, parts: list[Part]) -> pl.Expr:
    """``parts`` where ``cond`` holds, else null (left out of the line)."""
    return pl.when(cond).then(_concat(parts)).otherwise(_NULL)


def _render_kind(frame: pl.DataFrame, kind: int) -> pl.DataFrame:
    """Add ``line`` (the NDJSON text) and the flat columns, for rows that all have ``kind``.

    Rendering one kind at a time keeps every expression unconditional on the kind, so Polars
    computes only the fields that kind has.
    """
    c = pl.col
    client = kind in _CLIENT
    is_eng = kind in (ENG_INIT, ENG_DONE)
    is_track = kind in _EVENT_NAMES
    user_id = c("user_num").cast(pl.String)
    tsf = c("u_ts_form")

    p: list[Part] = [f'{{"type":"{_TYPE_NAMES[kind]}"']
    if is_track:
        p.append(f',"event":"{_EVENT_NAMES[kind]}"')
    p += [',"messageId":"', c("message_id"), '"']
    timestamp = (
        pl.when(tsf < TS_ISO_UTC).then(_concat([',"timestamp":"', c("ts_iso"), '"']))
        .when(tsf < TS_ISO_OFFSET).then(_concat([',"timestamp":"', c("ts_offset_iso"), '"']))
        .otherwise(_concat([',"timestamp":', c("ts").cast(pl.String)]))
    )
    if client:
        # Some client events carry no timestamp: a device clock off by `skew`, and Segment's
        # correction receivedAt - (sentAt - originalTimestamp) recovers the event time.
        no_ts = tsf >= TS_MISSING
        p += [
            pl.when(no_ts).then(_NULL).otherwise(timestamp),
            _opt(no_ts, [',"originalTimestamp":"', c("original_iso"), '","sentAt":"', c("sent_iso"), '"']),
        ]
    else:
        p.append(timestamp)

    logged_out = (c("u_logged_out") < 0.2) if kind in (PAGE, SCREEN) else pl.lit(False)
    has_user = ~c("anonymous") & ~logged_out
    numeric_user = c("u_userid_num") < 0.01
    p += [
        _opt(has_user & numeric_user, [',"userId":', user_id]),
        _opt(has_user & ~numeric_user, [',"userId":"', user_id, '"']),
    ]
    if client:
        p += [',"anonymousId":"', c("anonymous_id"), '"']
    if kind == ALIAS:
        p += [',"previousId":"', c("anonymous_id"), '"']
    if kind == GROUP:
        p += [',"groupId":"acct_', c("group").cast(pl.String), '"']

    name: pl.Expr = _NULL
    if kind == PAGE:
        name = c("page_name")
        p += [',"name":"', name, '","properties":{"path":"', c("page_path"), '","title":"', name, '"}']
    elif kind == SCREEN:
        name = c("screen_name")
        p += [',"name":"', name, '"']

    duration_value = pl.lit(None, dtype=pl.Float64)
    direction = channel = agent = sentiment = _NULL
    if is_eng:
        uf = c("u_duration")
        dur = c("duration").cast(pl.Float64)
        decimal = ((uf >= 0.70) & (uf < 0.78)) | ((uf >= 0.84) & (uf < 0.88))
        number = pl.when(decimal).then(c("duration_dec")).otherwise(c("duration_int"))
        # number, decimal, numeric strings, absent, null, "n/a": what Flex integrations send
        duration_json = (
            pl.when(uf < 0.78).then(number)
            .when(uf < 0.88).then(_concat(['"', number, '"']))
            .when(uf < 0.93).then(_NULL)
            .when(uf < 0.97).then(pl.lit("null"))
            .otherwise(pl.lit('"n/a"'))
        )
        duration_value = (
            pl.when(uf >= 0.88).then(pl.lit(None, dtype=pl.Float64))
            .when(decimal).then(dur + 0.5)
            .otherwise(dur)
        )
        direction, channel, agent = c("direction"), c("channel"), c("agent")
        p += [
            ',"properties":{"direction":"', direction, '","channelType":"', channel,
            '","lastKnownAgentWorkerSid":"', agent, '"',
            _opt(duration_json.is_not_null(), [',"duration":', duration_json]),
        ]
        if kind == ENG_DONE:
            sentiment = pl.when(c("u_sentiment") < 0.95).then(c("sentiment")).otherwise(_NULL)
            p.append(_opt(sentiment.is_not_null(), [',"sentiment":"', sentiment, '"']))
        p.append("}")
    revenue_value = pl.lit(None, dtype=pl.Float64)
    if kind == ORDER:
        revenue_value = c("revenue").cast(pl.Float64).round(2)
        revenue_text = revenue_value.cast(pl.String)
        quoted = c("u_revenue") >= 0.95
        p += [
            ',"properties":{"order_id":"ord_', c("order_id").str.slice(0, 12), '","revenue":',
            _opt(quoted, ['"', revenue_text, '"']), _opt(~quoted, [revenue_text]),
            ',"currency":"USD"}',
        ]

    email_flat = phone_flat = _NULL
    if kind == IDENTIFY:
        phone_present = c("u_phone_present") < 0.85
        p += [
            ',"traits":{"email":"', c("email"), '"',
            _opt(phone_present, [',"phone":"', c("phone"), '"']),
            ',"name":"', c("display_name"), '","plan":"', c("plan"), '"}',
        ]
        email_flat, phone_flat = c("email"), _when(phone_present, c("phone"))
    elif kind == GROUP:
        employees = (c("group") % 500 + 1).cast(pl.String)
        p += [',"traits":{"name":"', c("company"), '","employees":', employees, "}"]

    library = {ENG_INIT: "twilio-flex", ENG_DONE: "twilio-flex", ORDER: "analytics-python"}
    if client:
        # iOS sends a zeroed advertising id when tracking is off (a blocked value); Android omits it.
        adid_sent = (
            pl.when(c("ad_tracking")).then(c("adid"))
            .when(c("device_kind") == 1).then(pl.lit("00000000-0000-0000-0000-000000000000"))
            .otherwise(_NULL)
        )
        tracking = pl.when(c("ad_tracking")).then(pl.lit("true")).otherwise(pl.lit("false"))
        p += [
            ',"context":{"library":{"name":"', c("library"), '"}',
            _opt(
                c("device_kind") != 0,
                [
                    ',"device":{"type":"', c("device_type"), '","id":"', c("device_id"), '"',
                    _opt(adid_sent.is_not_null(), [',"advertisingId":"', adid_sent, '"']),
                    ',"adTrackingEnabled":', tracking, "}",
                ],
            ),
            "}",
        ]
    else:
        ctx_phone = (c("u_ctx_phone") < 0.6) if is_eng else pl.lit(False)
        ctx_email = c("u_ctx_email") < 0.2
        p += [
            f',"context":{{"library":{{"name":"{library[kind]}"}}',
            _opt(
                ctx_phone | ctx_email,
                [
                    ',"traits":{',
                    _opt(ctx_phone, ['"phone":"', c("phone_ctx"), '"']),
                    _opt(ctx_phone & ctx_email, [","]),
                    _opt(ctx_email, ['"email":"', c("email"), '"']),
                    "}",
                ],
            ),
            "}",
        ]
        email_flat = _when(ctx_email, c("email"))
        phone_flat = _when(ctx_phone, c("phone_ctx"))
    p += [',"receivedAt":"', c("recv_iso"), '"}']

    return frame.with_columns(
        line=_concat(p),
        type=pl.lit(_TYPE_NAMES[kind]),
        event=pl.lit(_EVENT_NAMES.get(kind), dtype=pl.String),
        timestamp=pl.from_epoch(c("ts"), "ms").dt.replace_time_zone("UTC").dt.cast_time_unit("us"),
        user_id=_when(has_user, user_id),
        anonymous_id=c("anonymous_id") if client else _NULL,
        email=email_flat,
        phone=phone_flat,
        direction_text=direction,
        channelType=channel,
        lastKnownAgentWorkerSid=agent,
        duration_value=duration_value,
        sentiment_text=sentiment,
        revenue_value=revenue_value,
        name=name,
    )


def _render(frame: pl.DataFrame) -> pl.DataFrame:
    """Render every row (malformed rows get their line later); the input order is kept.

    Returns ``kind``, ``key``, ``line`` and the flat columns of :data:`PARQUET_COLUMNS`.
    """
    keep = ["_row", "kind", "key", "line", *PARQUET_COLUMNS]
    frame = frame.with_row_index("_row")
    parts = [
        _render_kind(frame.filter(pl.col("kind") == kind), kind).select(keep)
        for kind in _TYPE_NAMES
    ]
    bad = frame.filter(pl.col("kind") == MALFORMED)
    if len(bad):
        parts.append(_render_kind(bad, PAGE).with_columns(line=_NULL).select(keep))
    return pl.concat(parts).sort("_row").drop("_row")


PARQUET_COLUMNS = {
    "message_id": "message_id",
    "type": "type",
    "event": "event",
    "timestamp": "timestamp",
    "user_id": "user_id",
    "anonymous_id": "anonymous_id",
    "email": "email",
    "phone": "phone",
    "direction_text": "direction",
    "channelType": "channelType",
    "lastKnownAgentWorkerSid": "lastKnownAgentWorkerSid",
    "duration_value": "duration",
    "sentiment_text": "sentiment",
    "revenue_value": "revenue",
    "name": "name",
}


def _malformed_line(k: int, seed: int, start_ms: int, span_ms: int) -> str:
    """The ``k``-th broken record: each kind of fault a collector really sees, in rotation."""
    when = datetime.fromtimestamp((start_ms + (k * 7_919_993 * (seed + 1)) % span_ms) / 1000, UTC)
    ts = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    mid = f"bad-{seed}-{k}"
    variants = (
        f'{{"type":"track","event":"Order Completed","messageId":"{mid}","userId":"10',
        "GET /v1/track HTTP/1.1 502 Bad Gateway",
        f'{{"type":"track","event":"{ENGAGEMENT_INITIATED}","messageId":"{mid}","timestamp":"{ts}",'
        '"properties":{"direction":"Inbound","channelType":"voice"}}',
        f'{{"type":"page","messageId":"{mid}","anonymousId":"anon-{k}","timestamp":"yesterday at noon"}}',
        f'{{"type":"purchase","messageId":"{mid}","userId":"{100000 + k}","timestamp":"{ts}"}}',
        f'{{"type":"track","event":"","messageId":"{mid}","userId":"{100000 + k}","timestamp":"{ts}"}}',
        f'{{"type":"track","event":"{ORDER_COMPLETED}","messageId":"{mid}","userId":"{100000 + k}",'
        f'"timestamp":"{ts}","properties":"revenue=12.50"}}',
        '["track","Order Completed"]',
        f'{{"type":"identify","messageId":"{mid}","userId":"{100000 + k}","timestamp":"1899-12-31T23:59:59Z",'
        '"traits":{"email":"old@example.org"}}',
        f'{{"type":"track","event":"{ORDER_COMPLETED}","messageId":"{mid}","userId":"   ",'
        f'"timestamp":"{ts}","properties":{{"revenue":10}}}}',
    )
    return variants[k % len(variants)]


def _chunks(
    n_events: int, *, seed: int, start: datetime | None, days: int, malformed: bool
) -> Iterator[pl.DataFrame]:
    """Rendered frames of at most :data:`CHUNK_ROWS` rows, in file order."""
    start_ms = _resolve_start(start)
    plan = _simulate(n_events, seed=seed, start_ms=start_ms, days=days, malformed=malformed)
    span = plan.end_ms - plan.start_ms
    spellings = _spellings(plan)
    n = len(plan.key)
    for lo in range(0, max(n, 1), CHUNK_ROWS):  # one empty frame when there are no rows
        hi = min(n, lo + CHUNK_ROWS)
        frame = _render(_chunk_frame(plan, spellings, lo, hi))
        bad = frame["kind"] == MALFORMED
        if bad.any():
            keys = frame.filter(bad)["key"].to_list()
            fixed = [_malformed_line(-1 - k, seed, start_ms, span) for k in keys]
            lines = frame["line"].scatter(np.flatnonzero(bad.to_numpy()), fixed)
            frame = frame.with_columns(line=lines)
        yield frame


def generate_events(
    n_events: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    days: int = 365,
    malformed: bool = True,
) -> Iterator[dict | str]:
    """Yield exactly ``n_events`` Segment messages in arrival order.

    Dicts are well-formed Segment Spec messages (including late arrivals and byte-identical
    re-sent duplicates); ``str`` items are raw lines that a reader must quarantine (broken JSON,
    no ids, bad timestamps, unknown type, ...), present only when ``malformed`` is true.

    Parameters
    ----------
    n_events
        Total items, duplicates and malformed lines included.
    seed
        The same seed gives the same messages, byte for byte.
    start
        Start of the data (default 2025-01-01T00:00:00Z); events fall in ``[start, start + days)``.
    days
        Length of the simulated period.
    malformed
        Include deliberately malformed raw lines (about one in 2000, at least 8).
    """
    for frame in _chunks(n_events, seed=seed, start=start, days=days, malformed=malformed):
        for kind, line in zip(frame["kind"].to_list(), frame["line"].to_list(), strict=True):
            yield line if kind == MALFORMED else json.loads(line)


def write_ndjson(
    path: str | Path,
    n_events: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    days: int = 365,
    malformed: bool = True,
    gzip: bool | None = None,
) -> Path:
    """Write :func:`generate_events`' messages as NDJSON (gzip when the name ends in ``.gz``).

    The gzip header has no file name and mtime 0, so the same arguments give the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compressed = path.suffix == ".gz" if gzip is None else gzip
    with ExitStack() as stack:
        out: BinaryIO = stack.enter_context(open(path, "wb"))
        if compressed:
            out = stack.enter_context(
                gzip_module.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6)
            )
        for frame in _chunks(n_events, seed=seed, start=start, days=days, malformed=malformed):
            if len(frame):
                # Lines are already JSON text: written as they are, one per row, no quoting; one
                # write per chunk, so the gzip stream never depends on Polars' internal batching.
                buffer = io.BytesIO()
                frame.select("line").write_csv(buffer, include_header=False, quote_style="never")
                out.write(buffer.getbuffer())
    return path


def write_parquet(
    path: str | Path,
    n_events: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    days: int = 365,
) -> Path:
    """Write the well-formed messages (no malformed lines) as flat typed columns for baselines.

    Same events as ``write_ndjson(..., malformed=False)`` in the same order, duplicates included
    (a baseline must drop repeated ``message_id``\\ s as the engine does). Columns: message_id,
    type, event (track only), timestamp (UTC), user_id, anonymous_id, email and phone (as sent,
    from traits or context.traits), direction, channelType, lastKnownAgentWorkerSid, duration
    (float64 as a trait with ``value_type = "number"`` reads it; null when absent, null or
    "n/a"), sentiment, revenue, name (page/screen).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for frame in _chunks(n_events, seed=seed, start=start, days=days, malformed=False):
            table = frame.select(
                [pl.col(k).alias(v) for k, v in PARQUET_COLUMNS.items()]
            ).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return path


def end_of_data(*, start: datetime | None = None, days: int = 365) -> datetime:
    """The instant after the last possible event: a natural, reproducible ``as_of``."""
    start = DEFAULT_START if start is None else start
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return start + timedelta(days=days)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m benchmarks.generate --events N --seed S --out PATH``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, required=True, help="total lines to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help=".ndjson, .ndjson.gz or .parquet")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--start", type=datetime.fromisoformat, default=None, help="ISO date, default 2025-01-01")
    parser.add_argument("--no-malformed", action="store_true", help="leave out the broken lines")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.out.suffix == ".parquet":
        write_parquet(args.out, args.events, seed=args.seed, start=args.start, days=args.days)
    else:
        write_ndjson(
            args.out, args.events, seed=args.seed, start=args.start, days=args.days,
            malformed=not args.no_malformed,
        )
    result = {
        "path": str(args.out),
        "events": args.events,
        "seed": args.seed,
        "bytes": args.out.stat().st_size,
        "seconds": round(time.perf_counter() - began, 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
