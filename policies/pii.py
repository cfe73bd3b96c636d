"""Personal data in request text: detect, redact, and walk an OpenAI body (pure).

Detectors (kind: what counts):

    email         local@domain.tld, not inside a URL's host or path (see below)
    phone         +CC... or 00CC... (E.164: 8-15 digits, national length checked for
                  common country codes); North American (555) 123-4567, 555-123-4567,
                  1-555-123-4567; trunk-0 national numbers of 10-11 digits written
                  with one separator style (020 7946 0958, 06-12345678, 01.23.45.67.89)
    payment_card  13-19 digits, optionally grouped by spaces or dashes, first digit
                  2-6, Luhn check digit valid
    iban          country code with its registered length, mod-97 check = 1
                  (upper case, compact or in groups of four)
    national_id   US SSN (AAA-GG-SSSS, never-issued ranges excluded), UK NINO
                  (HMRC prefix rules, suffix A-D), Spanish DNI/NIE (mod-23 letter)

Near-misses are not personal data: a 16-digit number failing Luhn, an IBAN with a
bad checksum, an SSN in a never-issued range, a 7-digit order number, a number
with no separators or prefix that is not a card (``5551234567``).

"Inside a URL": an email-like string that lies after ``scheme://`` and before the
URL's first ``?`` or ``#`` (its user-info, host or path, e.g.
``https://medium.com/@a/b@c.io``, ``ftp://user@host.example.com``) is not an
email. In the query or fragment (``...?contact=ann@corp.example``) it is one.

A :class:`Hit` records the kind and the position only; never the matched text.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from collections.abc import Mapping  # (not typing.Mapping: isinstance on it is several times slower)
from typing import Any, Callable, Iterator

from policies import pii_checks as checks


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str  # email, phone, payment_card, iban, national_id
    start: int
    end: int
    subtype: str = ""  # e.g. us_ssn, uk_nino, e164; never the value


_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_%+-])([A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})(?![A-Za-z0-9-])"
)
_URL = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s<>\"'`]*")
# Phone candidates are bounded (a phone is never 30 characters long), so scanning stays linear.
_PHONE_INTL = re.compile(r"(?<![\w+])(\+|00)(?=[1-9])[\d \-.()]{0,26}\d(?!\w)")
_PHONE_NANP = re.compile(r"(?<![\w+(-])(?:1[-. ])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}([-. ]))[2-9]\d{2}[-. ]\d{4}(?![\w-])")
_PHONE_TRUNK = re.compile(r"(?<![\w+(-])(?:\(0[1-9]\d{0,4}\) ?|0[1-9])[\d \-.]{0,20}\d(?!\w)")
_DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?=[ ]?[A-Z0-9])")
_SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
_NINO = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2}) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-Z])(?![A-Za-z0-9])")
_DNI = re.compile(r"(?<![A-Za-z0-9-])([XYZ]-?\d{7}|\d{8})-?([A-Z])(?![A-Za-z0-9])")
_IBAN_SHAPE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_SEPARATORS = re.compile(r"[ \-.]")

Span = tuple[int, int, str]  # start, end, subtype


def _emails(text: str) -> Iterator[Span]:
    url_parts = [(m.start(), m.start() + len(re.split(r"[?#]", m.group(0), maxsplit=1)[0]))
                 for m in _URL.finditer(text)]  # sorted, not overlapping
    url_starts = [lo for lo, _ in url_parts]
    for m in _EMAIL.finditer(text):
        url = bisect.bisect_right(url_starts, m.start()) - 1
        if ".." in m.group(1) or (url >= 0 and m.start() < url_parts[url][1]):
            continue
        yield m.start(), m.end(), "email"


def _phones(text: str) -> Iterator[Span]:
    def intl(body: str) -> bool:
        prefix = 1 if body.startswith("+") else 2
        return _well_formed(body[prefix:]) and checks.phone_digits(_digits(body.replace("(0)", "")), True)

    def national(body: str) -> bool:
        return (_well_formed(body) and checks.phone_digits(_digits(body), international=False)
                and len(set(_SEPARATORS.findall(body.replace(") ", ")")))) <= 1)

    yield from _scan(_PHONE_INTL, text, intl, "e164")
    for m in _PHONE_NANP.finditer(text):
        yield m.start(), m.end(), "nanp"
    yield from _scan(_PHONE_TRUNK, text, national, "national")


def _scan(pattern: re.Pattern[str], text: str, valid: Callable[[str], bool], subtype: str) -> Iterator[Span]:
    """Candidates of ``pattern`` trimmed to their longest valid prefix; after a phone the scan
    resumes where it ended, so a list of numbers yields each of them."""
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        length = _longest(m.group(0), valid)
        if length:
            yield m.start(), m.start() + length, subtype
            pos = m.start() + length
        else:
            pos = m.start() + 1


def _longest(candidate: str, valid: Callable[[str], bool]) -> int:
    """The length of the longest prefix of ``candidate``, cut before a separator, that is valid.

    A greedy match may run into a number that follows the phone ("020 7946 0958 2 times");
    trailing groups are dropped one at a time until the rest is a phone number."""
    body = candidate
    while body:
        if valid(body):
            return len(body)
        cut = max(body.rfind(" "), body.rfind("-"), body.rfind("."))
        body = body[:cut].rstrip(" -.(") if cut > 0 else ""
    return 0


def _well_formed(body: str) -> bool:
    """No two separators in a row and balanced, non-nested parentheses."""
    if re.search(r"[ \-.]{2}", body.replace(") ", ")").replace(" (", "(")):
        return False
    return re.fullmatch(r"[^()]*(\([^()]*\)[^()]*)?", body) is not None


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _cards(text: str) -> Iterator[Span]:
    for m in _DIGIT_RUN.finditer(text):
        groups = [(g.start(), g.end(), g.group(0)) for g in re.finditer(r"\d+", m.group(0))]
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end():m.end() + 2]
        if before.isalpha() or before in "+.,_/":  # the first group belongs to a word or a decimal
            groups = groups[1:]
        if after[:1].isalpha() or re.match(r"[.,/]\d", after):  # so does the last
            groups = groups[:-1]
        i = 0
        while i < len(groups):
            best, digits = None, ""
            for j in range(i, len(groups)):  # windows of whole groups, at most 19 digits
                digits += groups[j][2]
                if len(digits) > 19:
                    break
                if checks.payment_card(digits):
                    best = j
            if best is None:
                i += 1
                continue
            yield m.start() + groups[i][0], m.start() + groups[best][1], "card"
            i = best + 1


def _ibans(text: str) -> Iterator[Span]:
    for m in _IBAN_START.finditer(text):
        want = checks.IBAN_LENGTHS.get(m.group(0)[:2])
        if want is None:
            continue
        compact, pos = m.group(0), m.end()
        while len(compact) < want and pos < len(text):
            ch = text[pos]
            if ch == " " and len(compact) % 4 == 0 and pos + 1 < len(text) and text[pos + 1] != " ":
                pos += 1
                continue
            if not (ch.isdigit() or "A" <= ch <= "Z"):
                break
            compact += ch
            pos += 1
        if len(compact) == want and not text[pos:pos + 1].isalnum() and checks.iban(compact):
            yield m.start(), pos, "iban"


def _national_ids(text: str) -> Iterator[Span]:
    for m in _SSN.finditer(text):
        if checks.us_ssn(m.group(1) + m.group(3) + m.group(4)):
            yield m.start(), m.end(), "us_ssn"
    for m in _NINO.finditer(text):
        if checks.uk_nino("".join(m.groups())):
            yield m.start(), m.end(), "uk_nino"
    for m in _DNI.finditer(text):
        compact = m.group(1).replace("-", "") + m.group(2)
        if checks.es_dni(compact):
            yield m.start(), m.end(), "es_nie" if compact[0] in "XYZ" else "es_dni"


# Overlapping candidates: the first kind in this table wins.
DETECTORS: tuple[tuple[str, Callable[[str], Iterator[Span]]], ...] = (
    ("payment_card", _cards),
    ("iban", _ibans),
    ("national_id", _national_ids),
    ("email", _emails),
    ("phone", _phones),
)
KINDS = tuple(kind for kind, _ in DETECTORS)


# Every detector needs a digit (``\d``, as its own patterns spell it) or an ``@`` in what it finds:
# text with neither has no personal data, and most prompts are such text.
_MAY_HOLD_PII = re.compile(r"[\d@]")


def detect(text: str) -> tuple[Hit, ...]:
    """Every piece of personal data in ``text``, in text order, without overlaps.

    Text shaped like an IBAN of a known country is an IBAN or nothing: digits inside
    an IBAN with a bad checksum are not reported as a phone or card number."""
    if _MAY_HOLD_PII.search(text) is None:
        return ()
    return _detect(text)


def _detect(text: str) -> tuple[Hit, ...]:
    """:func:`detect` without the pre-filter (the tests hold the two equal)."""
    shapes = [m.span() for m in _IBAN_SHAPE.finditer(text) if m.group(0)[:2] in checks.IBAN_LENGTHS]
    shape_starts = [lo for lo, _ in shapes]
    taken: list[Hit] = []  # sorted by start, never overlapping
    starts: list[int] = []
    for kind, find in DETECTORS:
        for start, end, subtype in find(text):
            inside = bisect.bisect_right(shape_starts, start) - 1
            if kind != "iban" and inside >= 0 and start < shapes[inside][1]:
                continue
            at = bisect.bisect_right(starts, start)
            if (at and taken[at - 1].end > start) or (at < len(taken) and taken[at].start < end):
                continue
            taken.insert(at, Hit(kind, start, end, subtype))
            starts.insert(at, start)
    return tuple(taken)


def redact(text: str, hits: tuple[Hit, ...] | list[Hit]) -> str:
    """``text`` with each hit replaced by ``[REDACTED:<kind>]``."""
    out, last = [], 0
    for hit in sorted(hits, key=lambda h: h.start):
        out += [text[last:hit.start], f"[REDACTED:{hit.kind}]"]
        last = hit.end
    return "".join(out) + text[last:]


# --- OpenAI bodies --------------------------------------------------------------

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class FieldHits:
    """The hits in one text field of a body, e.g. ``messages[0].content``."""

    path: Path
    hits: tuple[Hit, ...]

    @property
    def where(self) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(self.path))


def text_fields(body: Mapping[str, Any]) -> Iterator[tuple[Path, str]]:
    """Every text a model would read: message content (a string or text parts), tool call
    arguments of assistant messages, and embeddings ``input`` (a string or a list of them)."""
    messages = body.get("messages")
    for i, msg in enumerate(messages if isinstance(messages, list) else ()):  # wrong types: nothing to read
        if not isinstance(msg, Mapping):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            yield ("messages", i, "content"), content
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    yield ("messages", i, "content", j, "text"), part["text"]
        calls = msg.get("tool_calls")
        for k, call in enumerate(calls if isinstance(calls, list) else ()):
            function = call.get("function") if isinstance(call, Mapping) else None
            args = function.get("arguments") if isinstance(function, Mapping) else None
            if isinstance(args, str):
                yield ("messages", i, "tool_calls", k, "function", "arguments"), args
    inp = body.get("input")
    if isinstance(inp, str):
        yield ("input",), inp
    elif isinstance(inp, list):
        for i, item in enumerate(inp):
            if isinstance(item, str):
                yield ("input", i), item


def detect_body(body: Mapping[str, Any]) -> tuple[FieldHits, ...]:
    found = []
    for path, text in text_fields(body):
        hits = detect(text)
        if hits:
            found.append(FieldHits(path, hits))
    return tuple(found)


def redact_body(body: Mapping[str, Any], found: tuple[FieldHits, ...], kinds: frozenset[str]) -> dict[str, Any]:
    """A new body with the hits of ``kinds`` redacted; ``body`` itself is never changed."""
    out: Any = dict(body)
    for field in found:
        chosen = tuple(h for h in field.hits if h.kind in kinds)
        if chosen:
            out = _replace(out, field.path, functools.partial(_redact_with, chosen))
    return dict(out)


def _redact_with(hits: tuple[Hit, ...], text: str) -> str:
    return redact(text, hits)


def _replace(node: Any, path: Path, change: Callable[[str], str]) -> Any:
    """A copy of ``node`` with the string at ``path`` changed; containers on the path are copied."""
    if not path:
        return change(node)
    copy: Any = list(node) if isinstance(node, list) else dict(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], change)
    return copy
