"""Check digits and issuing rules that tell real identifiers from look-alikes (pure).

Each function takes the compact identifier (separators removed) and answers
whether it could have been issued. The detectors in :mod:`policies.pii` only
report a candidate that passes its check here.
"""

from __future__ import annotations

# IBAN length per country (ISO 13616 registry). A country not listed is not an IBAN.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

# Card numbers start with 2-6 (Mastercard 2/5, Amex/Diners/JCB 3, Visa 4, Discover/UnionPay/Maestro 6).
CARD_FIRST_DIGITS = frozenset("23456")

# National number lengths (without the trunk 0) number lengths for common country calling codes; others: 7-12 digits.
PHONE_NATIONAL_LENGTHS: dict[str, tuple[int, int]] = {
    "1": (10, 10), "7": (10, 10), "31": (9, 9), "32": (8, 9), "33": (9, 9), "34": (9, 9), "39": (6, 11),
    "41": (9, 9), "44": (9, 10), "46": (7, 13), "49": (6, 13), "61": (9, 9), "81": (9, 10), "86": (10, 11),
    "91": (10, 10),
}

_NINO_BAD_FIRST = frozenset("DFIQUV")
_NINO_BAD_SECOND = frozenset("DFIOQUV")
_NINO_BAD_PREFIX = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_NIE_PREFIX = {"X": "0", "Y": "1", "Z": "2"}
_SSN_NEVER_ISSUED = frozenset({"078051120", "219099999"})  # published in ads; void


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def payment_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in CARD_FIRST_DIGITS and luhn(digits)


def iban(compact: str) -> bool:
    """ISO 13616: known country, its exact length, and mod-97 of the rearranged number is 1."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def us_ssn(digits: str) -> bool:
    """Area 000, 666 and 900-999, group 00 and serial 0000 were never issued."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
            and digits not in _SSN_NEVER_ISSUED)


def uk_nino(compact: str) -> bool:
    """HMRC: two prefix letters (with excluded letters and pairs), six digits, suffix A-D."""
    prefix = compact[:2]
    return (prefix[0] not in _NINO_BAD_FIRST and prefix[1] not in _NINO_BAD_SECOND
            and prefix not in _NINO_BAD_PREFIX and compact[-1] in "ABCD")


def es_dni(compact: str) -> bool:
    """Spain: 8 digits and a control letter (number mod 23); NIE: X/Y/Z for 0/1/2, 7 digits, letter."""
    number = _NIE_PREFIX.get(compact[0], compact[0]) + compact[1:-1]
    return number.isdigit() and _DNI_LETTERS[int(number) % 23] == compact[-1]


def phone_digits(digits: str, international: bool) -> bool:
    """International: a known country code with its national length, else 8-15 digits in all (E.164)."""
    if not international:
        return 10 <= len(digits) <= 11
    if not 8 <= len(digits) <= 15:
        return False
    for size in (1, 2):
        bounds = PHONE_NATIONAL_LENGTHS.get(digits[:size])
        if bounds is not None:  # the national number after a country code has no trunk 0 (Italy keeps it)
            national = digits[size:]
            return bounds[0] <= len(national) <= bounds[1] and (national[0] != "0" or digits[:size] == "39")
    return True
