"""Personal-data detectors: what counts, the near-misses that do not, redaction, body walking."""

from __future__ import annotations

import copy
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import pii, pii_checks


def found(text: str) -> list[tuple[str, str]]:
    return [(h.kind, text[h.start:h.end]) for h in pii.detect(text)]


@pytest.mark.parametrize("text, kind, match", [
    # email
    ("write to ann.lee@corp.example.com today", "email", "ann.lee@corp.example.com"),
    ("<bob+tag@mail.example.org>", "email", "bob+tag@mail.example.org"),
    ("mailto:ann@corp.example", "email", "ann@corp.example"),
    ("https://x.example/?contact=ann@corp.example", "email", "ann@corp.example"),
    ("see https://x.example/p#ann@corp.example", "email", "ann@corp.example"),
    ("ANN@CORP.EXAMPLE.", "email", "ANN@CORP.EXAMPLE"),
    # phone
    ("call +44 20 7946 0958 today", "phone", "+44 20 7946 0958"),
    ("+44 (0)20 7946 0958", "phone", "+44 (0)20 7946 0958"),
    ("+1 (415) 555-2671", "phone", "+1 (415) 555-2671"),
    ("+14155552671", "phone", "+14155552671"),
    ("0049 30 1234567", "phone", "0049 30 1234567"),
    ("+39 06 6982 1234", "phone", "+39 06 6982 1234"),
    ("(415) 555-2671", "phone", "(415) 555-2671"),
    ("415-555-2671", "phone", "415-555-2671"),
    ("415.555.2671", "phone", "415.555.2671"),
    ("1-800-555-0199", "phone", "1-800-555-0199"),
    ("020 7946 0958 2 times", "phone", "020 7946 0958"),
    ("(020) 7946 0958", "phone", "(020) 7946 0958"),
    ("06-12345678", "phone", "06-12345678"),
    ("0612345678", "phone", "0612345678"),
    ("01 23 45 67 89", "phone", "01 23 45 67 89"),
    ("01.23.45.67.89", "phone", "01.23.45.67.89"),
    # payment cards
    ("card 4111 1111 1111 1111 exp 12/29", "payment_card", "4111 1111 1111 1111"),
    ("4111-1111-1111-1111", "payment_card", "4111-1111-1111-1111"),
    ("5555555555554444 cvv 123", "payment_card", "5555555555554444"),
    ("amex 3782 822463 10005", "payment_card", "3782 822463 10005"),
    ("visa13 4222222222222", "payment_card", "4222222222222"),
    ("pan:6011111111111117.", "payment_card", "6011111111111117"),
    # iban
    ("DE89 3704 0044 0532 0130 00", "iban", "DE89 3704 0044 0532 0130 00"),
    ("iban DE89370400440532013000.", "iban", "DE89370400440532013000"),
    ("GB82 WEST 1234 5698 7654 32 BIC", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("FR14 2004 1010 0505 0001 3M02 606", "iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("NO9386011117947", "iban", "NO9386011117947"),
    # national ids
    ("ssn 536-90-4399", "national_id", "536-90-4399"),
    ("ssn 536 90 4399", "national_id", "536 90 4399"),
    ("NI AB 12 34 56 C", "national_id", "AB 12 34 56 C"),
    ("NI AB123456C", "national_id", "AB123456C"),
    ("DNI 12345678Z", "national_id", "12345678Z"),
    ("NIE X1234567L", "national_id", "X1234567L"),
    ("NIE Y-1234567-X", "national_id", "Y-1234567-X"),
])
def test_detects(text: str, kind: str, match: str) -> None:
    assert found(text) == [(kind, match)]


@pytest.mark.parametrize("text", [
    # emails that are not
    "https://x.com/a@b",
    "https://medium.com/@ann/bob@corp.example ok",
    "ftp://user@host.example.com/file",
    "user@localhost", "pkg@1.2.3", "follow @handle", "a..b@corp.example", "x@y.c",
    # phones that are not
    "Order 555-0123", "order #12345-678", "+1 555 0100", "01.02.2024 10", "2024-01-15 10:30",
    "192.168.100.200", "ISBN 978-3-16-148410-0", "5551234567", "+0 123 456 789", "call 123-456-7890",
    # cards that are not
    "4111111111111112", "4111 1111 1111 1112", "1234567812345670", "version 3.4111111111111111",
    "id x4111111111111111", "41111111111111111111111", "0000000000000000",
    # ibans that are not
    "DE89 3704 0044 0532 0130 01", "DE8937040044053201300", "XX89370400440532013000",
    "FR14 2004 1010 0505 0001 3M02 607", "de89370400440532013000",
    # national ids that are not
    "666-12-3456", "000-12-3456", "912-34-5678", "536-00-4399", "536-90-0000", "536-90 4399", "078-05-1120",
    "QQ123456C", "GB123456A", "AB123456E", "DA123456A", "12345678A", "X1234567A",
])
def test_near_misses_do_not_match(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize("digits, ok", [
    ("4111111111111111", True), ("4111111111111112", False), ("79927398713", True), ("79927398710", False),
])
def test_luhn(digits: str, ok: bool) -> None:
    assert pii_checks.luhn(digits) is ok


def test_several_kinds_in_one_text_in_order_and_without_overlap() -> None:
    text = "Ann <ann@corp.example>, +44 20 7946 0958, card 4111 1111 1111 1111, IBAN DE89370400440532013000"
    assert [k for k, _ in found(text)] == ["email", "phone", "payment_card", "iban"]
    hits = pii.detect(text)
    assert all(a.end <= b.start for a, b in zip(hits, hits[1:]))


def test_hits_never_hold_the_text() -> None:
    hit = pii.detect("ann@corp.example")[0]
    assert "ann" not in repr(hit) and set(hit.__slots__) == {"kind", "start", "end", "subtype"}


@pytest.mark.parametrize("text, expected", [
    ("mail ann@corp.example now", "mail [REDACTED:email] now"),
    ("4111 1111 1111 1111 / +44 20 7946 0958", "[REDACTED:payment_card] / [REDACTED:phone]"),
    ("nothing here", "nothing here"),
])
def test_redact(text: str, expected: str) -> None:
    assert pii.redact(text, pii.detect(text)) == expected


def test_body_walk_finds_every_text_and_never_mutates() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": [{"type": "text", "text": "I am ann@corp.example"},
                                         {"type": "image_url", "image_url": {"url": "https://x/ann@corp.example"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"card": "4111111111111111"}'}}]},
            {"role": "user", "content": "call +44 20 7946 0958"},
        ],
    }
    before = copy.deepcopy(body)
    found_fields = pii.detect_body(body)
    assert [f.where for f in found_fields] == [
        "messages[1].content[0].text", "messages[2].tool_calls[0].function.arguments", "messages[3].content"]
    out = pii.redact_body(body, found_fields, frozenset({"email", "payment_card"}))
    assert body == before
    assert out["messages"][1]["content"][0]["text"] == "I am [REDACTED:email]"
    assert out["messages"][1]["content"][1] is body["messages"][1]["content"][1]  # untouched parts are shared
    assert out["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"card": "[REDACTED:payment_card]"}'
    assert out["messages"][3]["content"] == "call +44 20 7946 0958"  # phone not asked for


@pytest.mark.parametrize("body, paths", [
    ({"input": "ann@corp.example"}, ["input"]),
    ({"input": ["hi", "ann@corp.example", 3]}, ["input[1]"]),
    ({"messages": "not a list"}, []),
    ({"messages": [None, {"content": 5}]}, []),
])
def test_body_shapes(body: dict, paths: list[str]) -> None:
    assert [f.where for f in pii.detect_body(body)] == paths


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 -+().@abcXYZ:/ \n")), max_size=80))
def test_detect_is_total_and_redact_removes_every_hit(text: str) -> None:
    hits = pii.detect(text)
    assert all(0 <= h.start < h.end <= len(text) for h in hits)
    redacted = pii.redact(text, hits)
    assert all(h.kind in redacted for h in hits)


@pytest.mark.parametrize("text", [
    "+1 " + "2 " * 20000, "01 " * 20000, "+1 " + "(2) " * 20000, "4111 " * 20000, "4" * 100000,
    "a" * 50000 + "@" + "b." * 20000, "a@" + "a-" * 30000, "http://" * 20000, "DE89 " + "1234 " * 20000,
    "DE89 1234 1234 5 " * 5000, "http://x/a@b.co " * 10000, "ann@corp.example +44 20 7946 0958 4111 1111 1111 1111 " * 2000,
])
def test_detection_stays_linear_on_adversarial_text(text: str) -> None:
    started = time.perf_counter()
    pii.detect(text)
    assert time.perf_counter() - started < 3.0


# --- the pre-filter: detect() skips text without a digit or an "@", and finds exactly what the full scan finds

_PII_ALPHABET = st.sampled_from(list("abcXYZ @.-+()/_%#?:") + list("0123456789") + ["٣", "５", "\n", "é"])
_PII_PIECES = st.sampled_from(["ann@corp.example", "+44 20 7946 0958", "4111 1111 1111 1111",
                               "GB82 WEST 1234 5698 7654 32", "536-90-4399", "AB 12 34 56 C", "12345678Z",
                               "https://medium.com/@a/b@c.io", "(555) 123-4567", "020 7946 0958", "Say hello."])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(_PII_ALPHABET, max_size=30) | _PII_PIECES, max_size=6).map("".join))
def test_the_prefilter_finds_exactly_what_the_full_scan_finds(text: str) -> None:
    assert pii.detect(text) == pii._detect(text)


@given(st.text(max_size=200).map(lambda t: re.sub(r"[\d@]", "", t)))
def test_text_without_a_digit_or_at_sign_has_no_personal_data(text: str) -> None:
    assert pii._detect(text) == ()
