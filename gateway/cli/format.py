"""Pure helpers of the CLI: parsing times and formatting money, counts and times."""

from __future__ import annotations

import argparse
import math
import re
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

PLACES = Decimal("1e-12")  # the ledger keeps pico-dollars
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


# --- parsing (pure) --------------------------------------------------------------

def parse_when(spec: str, now: float | None = None) -> float:
    """Unix seconds from ``24h``/``7d``/``1h30m`` (that long ago), an ISO date or
    datetime (local time unless it names an offset) or unix seconds."""
    text = spec.strip()
    now = time.time() if now is None else now
    if _DURATION.fullmatch(text.lower()):
        ago = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text.lower()))
        return now - ago
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{spec!r} is not a duration (30m, 24h, 7d), an ISO date/datetime or unix seconds") from None
    return (dt if dt.tzinfo else dt.astimezone()).timestamp()


def _when_arg(spec: str) -> float:
    try:
        return parse_when(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


# --- numbers (pure) --------------------------------------------------------------

def to_decimal(value: Any) -> Decimal | None:
    """A JSON number as the exact decimal the gateway wrote (floats via their shortest repr)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return None


def plain(value: Decimal | None, places: Decimal = PLACES) -> str:
    """A plain decimal with no exponent and no trailing zeros: ``0.000235``, ``12``, ``-0.5``."""
    if value is None:
        return ""
    text = f"{value.quantize(places):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def usd_amount(value: Any, picousd: Any = None) -> Decimal | None:
    """USD, exact from the integer pico-dollars when the API gave them."""
    if isinstance(picousd, int) and not isinstance(picousd, bool):
        return Decimal(picousd) / 10**12
    return to_decimal(value)


def fmt_usd(value: Any, picousd: Any = None) -> str:
    """``$0.000235``, ``$0.05``, ``-$1.20``: every significant digit, never an exponent."""
    amount = usd_amount(value, picousd)
    if amount is None:
        return "—"
    text = plain(abs(amount))
    whole, _, frac = text.partition(".")
    return f"{'-' if amount < 0 else ''}${whole}.{frac.ljust(2, '0')}"


def fmt_ratio(value: Any) -> str:
    d = to_decimal(value)
    return "—" if d is None else f"{d * 100:.1f}%"


def fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "—"


def fmt_ago(ts: Any, now: float) -> str:
    if not ts:
        return "—"
    secs = max(0.0, now - float(ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit} ago"
    return f"{int(secs)}s ago"


def fmt_time(ts: Any, with_date: bool = True) -> str:
    """Local time: ``2025-01-31 14:02:07 CET``, or ``14:02:07.123`` without the date."""
    if not ts:
        return "—"
    dt = datetime.fromtimestamp(float(ts)).astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S %Z") if with_date else dt.strftime("%H:%M:%S.%f")[:-3]


def fmt_iso(ts: Any) -> str:
    return datetime.fromtimestamp(float(ts), timezone.utc).isoformat().replace("+00:00", "Z") if ts else ""
