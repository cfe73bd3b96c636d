"""No secret fragments in any message: the one redaction function (pure).

An upstream error message may echo part of the key it was sent ("Incorrect API key
provided: sk-proj-****abcd"), and a URL may carry credentials in its userinfo
(``http://user:PASS@host``). :func:`scrub` removes both before a message reaches a
client, a log line or the store:

- the userinfo of every URL in the text (``scheme://user:pass@host`` -> ``scheme://***@host``);
- every token that looks like an API key or a masked key (``sk-...``, ``AKIA...``, ``****abcd``,
  ``Bearer <token>``, what follows "API key provided:");
- every token of 4 or more characters that is part of one of the given secrets (so the last
  four characters of a key are gone too, in whatever wording the upstream used).
"""

from __future__ import annotations

import re
from typing import Iterable

MASK = "***"
MIN_FRAGMENT = 4  # a token this long that occurs inside a secret is a fragment of it

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@\"'<>]*@")
_KEY_PROVIDED = re.compile(r"(?i)((?:api[ _-]?key|token|secret|password)(?:\s+(?:provided|given|used|was|is))?"
                           r"\s*[:=](?!//)\s*)['\"]?[^\s'\",;]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",;]+")
_KEY_LIKE = re.compile(
    r"\b(?:sk|pk|rk|ak|sess|key)[-_][A-Za-z0-9_\-*.]{3,}"   # sk-..., sk-proj-..., sk-ant-..., key-...
    r"|\b(?:AKIA|ASIA|AIza)[0-9A-Za-z_\-]{8,}"              # AWS access key ids, Google API keys
    r"|[^\s*]*\*{3,}[A-Za-z0-9]{2,}\S*"                       # masked keys: sk-****abcd, ****abcd
    r"|\S*\.{3}[A-Za-z0-9]{2,}\b"                            # elided keys: sk-...abcd
)
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=]{%d,}" % MIN_FRAGMENT)


def strip_userinfo(text: str) -> str:
    """``http://user:PASS@host/x`` -> ``http://***@host/x``, for every URL in ``text``."""
    return _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL credentials, key-like tokens and every fragment of ``secrets`` masked."""
    text = strip_userinfo(text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _KEY_PROVIDED.sub(lambda m: m.group(1) + MASK, text)
    text = _KEY_LIKE.sub(MASK, text)
    known = [s for s in secrets if s and len(s) >= MIN_FRAGMENT]
    if known:
        text = _TOKEN.sub(lambda m: MASK if any(_shares_fragment(m.group(0), s) for s in known) else m.group(0),
                          text)
    return text


def _shares_fragment(token: str, secret: str) -> bool:
    """The token is part of the secret, holds it, or holds its last four characters."""
    return token in secret or secret in token or secret[-MIN_FRAGMENT:] in token


__all__ = ["MASK", "scrub", "strip_userinfo"]
