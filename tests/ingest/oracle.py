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


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return epoch_ms(value)
    if not isinstance(value, str):
        return None
    if re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    if re.fullmatch(r"-?[0-9]+", value):
        return epoch_ms(int(value))
    return None


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check(text: str, now: datetime) -> tuple[list[str], dict[str, Any]]:
    """``(reasons, columns)`` for one record; accepted when ``reasons`` is empty."""
    if len(text.encode()) > 32 * 1024:
        return [f"message is {len(text.encode())} bytes, over the 32 KiB limit"], {}
    try:
        msg = json.loads(text)
    except ValueError:
        return ["invalid JSON"], {}
    if not isinstance(msg, dict):
        return [f"message is {a_kind(msg)}, not a JSON object"], {}
    reasons: list[str] = []
    ids = {}
    for name in ("messageId", "userId", "anonymousId", "previousId", "groupId"):
        value = get(msg, name)
        if isinstance(value, (bool, dict, list)):
            reasons.append(f"{name} is {a_kind(value)}")
        ids[name] = identifier(value)
    times = {}
    for name in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        value = get(msg, name)
        times[name] = parse_time(value)
        if value is not None and times[name] is None:
            shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            reasons.append(f"{name} '{shown[:64]}' is not ISO-8601 or epoch milliseconds")
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
    if get(msg, "timestamp") is not None:
        event_time, source = ts, "timestamp"
    elif orig and sent and recv:
        event_time, source = recv - (sent - orig), "clock-skew-corrected time (receivedAt - (sentAt - originalTimestamp))"
    elif orig:
        event_time, source = orig, "originalTimestamp"
    else:
        event_time, source = recv or now, "receivedAt"
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
