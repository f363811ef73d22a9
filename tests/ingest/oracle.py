"""A deliberately naive, per-record Python reading of events.md: the oracle for the SQL contract.

Written from the spec, not from ``ingest/contract.py``: one message in, its reasons (in the
contract's report order) or its normalised columns out.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

WS = " \t\n\r\f\v"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TYPES = ("track", "identify", "alias", "page", "screen", "group")
SPELLINGS = {
    "messageId": ("messageId", "message_id"),
    "userId": ("userId", "user_id"),
    "anonymousId": ("anonymousId", "anonymous_id"),
    "previousId": ("previousId", "previous_id"),
    "groupId": ("groupId", "group_id"),
    "timestamp": ("timestamp",),
    "originalTimestamp": ("originalTimestamp", "original_timestamp"),
    "sentAt": ("sentAt", "sent_at"),
    "receivedAt": ("receivedAt", "received_at"),
}


def a_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"


def get(msg: dict, name: str) -> Any:
    """The first spelling sent with a non-null value (JSON null = absent)."""
    for key in SPELLINGS.get(name, (name,)):
        if msg.get(key) is not None:
            return msg[key]
    return None


def number_text(value: int | float) -> str:
    return json.dumps(value)


def identifier(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip(WS) or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number_text(value)
    return None


def epoch_ms(ms: float) -> datetime | None:
    if abs(ms) >= 10**14:
        return None
    return EPOCH + timedelta(microseconds=round(ms * 1000))


# ISO-8601 as events.md reads it, written out: extended (2024-03-01T10:00:00.5+01:00) or basic
# (20240301T100000,5+0100) format, T/t/space, reduced precision (hh, hh:mm), Z/z or an offset.
_DATE_EXT = r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
_CLOCK_EXT = r"(?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?"
_DATE_BASIC = r"(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})"
_CLOCK_BASIC = r"(?P<h>\d{2})(?:(?P<mi>\d{2})(?:(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?"
_ZONE = r"(?P<z>[Zz]|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?"
ISO_SHAPES = (
    re.compile(_DATE_EXT),
    re.compile(_DATE_EXT + r"[Tt ]" + _CLOCK_EXT + _ZONE),
    re.compile(_DATE_BASIC + r"[Tt]" + _CLOCK_BASIC + _ZONE),
)


def parse_iso(text: str) -> datetime | None:
    match = next((m for m in (shape.fullmatch(text) for shape in ISO_SHAPES) if m), None)
    if match is None:
        return None
    parts = match.groupdict()
    hour, minute, second = (int(parts.get(k) or 0) for k in ("h", "mi", "s"))
    fraction = parts.get("f") or ""
    micros = int((fraction + "000000")[:6])
    extra = timedelta(0)
    if hour == 24 and minute == 0 and second == 0 and not fraction.strip("0"):
        hour, extra = 0, timedelta(days=1)
    try:
        moment = datetime(int(parts["y"]), int(parts["mo"]), int(parts["d"]), hour, minute, second, micros, tzinfo=timezone.utc)
    except ValueError:
        return None
    zone = parts.get("z") or "Z"
    if zone not in "Zz":
        digits = zone[1:].replace(":", "")
        shift = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        moment -= shift if zone[0] == "+" else -shift
    return moment + extra


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return epoch_ms(value)
    if not isinstance(value, str):
        return None
    value = value.strip(WS)
    if re.fullmatch(r"-?[0-9]+", value):
        return epoch_ms(int(value))
    return parse_iso(value)


# -- what DuckDB reads and RFC 8259 does not, and nesting depth: one character scan ----------------
MAX_DEPTH = 512


def scan(text: str) -> tuple[str, bool, bool, int]:
    """``(text with non-finite numbers as 0 and trailing commas dropped, any non-finite, any
    trailing comma, deepest nesting)``, scanning characters outside strings."""
    out: list[str] = []
    non_finite = trailing = False
    depth = deepest = 0
    in_string = escaped = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            out.append(c)
            in_string = escaped or c != '"'
            escaped = not escaped and c == "\\"
            i += 1
            continue
        if c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
        elif c == "," and text[i + 1 :].lstrip(" \t\n\r")[:1] in ("]", "}"):
            trailing = True
            i += 1
            continue
        word = re.match(r"-?(infinity|inf|nan)", text[i:], re.IGNORECASE)
        if word and (c in "-nNiI") and "".join(out).rstrip(" \t\n\r")[-1:] in ("", ":", "[", ","):
            non_finite = True
            out.append("0")
            i += len(word.group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out), non_finite, trailing, deepest


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check(text: str, now: datetime) -> tuple[list[str], dict[str, Any]]:
    """``(reasons, columns)`` for one record; accepted when ``reasons`` is empty."""
    if len(text.encode()) > 32 * 1024:
        return [f"message is {len(text.encode())} bytes, over the 32 KiB limit"], {}
    cleaned, non_finite, trailing, deepest = scan(text)
    try:
        msg = json.loads(cleaned)
    except RecursionError:  # deeper than Python's parser goes: the depth rule below applies
        msg = None
    except ValueError:
        return ["invalid JSON"], {}
    if non_finite or trailing:
        return [r for r, broken in (("invalid JSON: NaN and Infinity are not JSON numbers", non_finite),
                                    ("invalid JSON: trailing comma", trailing)) if broken], {}
    if deepest > MAX_DEPTH:
        return [f"message is nested {deepest} levels deep, over the limit of {MAX_DEPTH}"], {}
    if not isinstance(msg, dict):
        return [f"message is {a_kind(msg)}, not a JSON object"], {}
    reasons: list[str] = []
    ids = {}
    for name in ("messageId", "userId", "anonymousId", "previousId", "groupId"):
        value = get(msg, name)
        if isinstance(value, (bool, dict, list)):
            reasons.append(f"{name} is {a_kind(value)}")
        ids[name] = identifier(value)
    times, sent_times = {}, {}
    for name in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        value = get(msg, name)
        if value is not None and not (isinstance(value, str) and value.strip(WS) == ""):
            sent_times[name] = value
        times[name] = parse_time(value)
    for name in ("properties", "traits", "context"):
        value = msg.get(name)
        if value is not None and not isinstance(value, dict):
            reasons.append(f"{name} is not an object (it is {a_kind(value)})")

    sent_type, event = msg.get("type"), msg.get("event")
    event_text = event if isinstance(event, str) else (None if event is None else json.dumps(event))
    msg_type = None
    if sent_type is None:
        if event is None:
            reasons.append("missing type (and no event to make it a track)")
        else:
            msg_type = "track"
    elif not isinstance(sent_type, str):
        reasons.append(f"type is {a_kind(sent_type)}, not a string")
    else:
        msg_type = sent_type.strip(WS).lower()
        if msg_type not in TYPES:
            reasons.append(f"unknown type '{sent_type[:64]}'")
    if ids["userId"] is None and ids["anonymousId"] is None:
        reasons.append("missing userId and anonymousId")
    if msg_type == "track":
        if event is not None and not isinstance(event, str):
            reasons.append(f"track event is {a_kind(event)}, not a string")
        elif (event or "").strip(WS) == "":
            reasons.append("track without event")
    if msg_type == "alias" and ids["userId"] is None:
        reasons.append("alias without userId")
    if msg_type == "alias" and ids["previousId"] is None:
        reasons.append("alias without previousId")
    if msg_type == "group" and ids["groupId"] is None:
        reasons.append("group without groupId")

    ts, orig, sent, recv = (times[k] for k in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"))
    skew = ("originalTimestamp", "sentAt", "receivedAt")
    if "timestamp" in sent_times:
        used, event_time, source = ("timestamp",), ts, "timestamp"
    elif all(k in sent_times for k in skew):
        source = "clock-skew-corrected time (receivedAt - (sentAt - originalTimestamp))"
        used, event_time = skew, (recv - (sent - orig) if orig and sent and recv else None)
    elif "originalTimestamp" in sent_times:
        used, event_time, source = ("originalTimestamp",), orig, "originalTimestamp"
    elif "receivedAt" in sent_times:
        used, event_time, source = ("receivedAt",), recv, "receivedAt"
    else:
        used, event_time, source = (), now, "receivedAt"
    for name in used:
        if times[name] is None:
            value = sent_times[name]
            shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            reasons.append(f"{name} '{shown[:64]}' is not ISO-8601 or epoch milliseconds")
    if event_time is not None:
        if event_time < EPOCH:
            reasons.append(f"{source} {iso(event_time)} is before 1970-01-01")
        elif event_time > now + timedelta(days=100):
            reasons.append(f"{source} {iso(event_time)} is more than 100 days after the ingest time {iso(now)}")

    names = {"page": "Page Viewed", "screen": "Screen Viewed"}
    name = msg.get("name")
    columns = {
        "message_id": ids["messageId"],
        "type": msg_type,
        "event": event_text if msg_type == "track" else names.get(msg_type or ""),
        "name": (name if isinstance(name, str) else json.dumps(name)) if msg_type in names and name is not None else None,
        "timestamp": event_time,
        "user_id": ids["userId"],
        "anonymous_id": ids["anonymousId"],
        "previous_id": ids["previousId"],
        "group_id": ids["groupId"],
        "received_at": recv or now,
    }
    return reasons, columns
