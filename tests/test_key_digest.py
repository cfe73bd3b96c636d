"""A config's keys are looked up by HMAC digest with an HMAC keyed once per config
(gateway/config/identity.py ``keyed``/``digest_with``): the same digest as ``key_digest``,
for any secret (longer than a SHA-256 block too) and any token, however often the keyed one is reused."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.config.identity import digest_with, key_digest, keyed
from gateway.config.load import parse

CONFIG = """
model_list:
  - {model_name: m, litellm_params: {model: openai/gpt-4o-mini, api_key: k}}
auth:
  keys:
    - {key: sk-one-key, tenant: one}
    - {key: sk-two-key, tenant: two}
"""


@given(st.binary(max_size=200), st.lists(st.text(max_size=80), min_size=1, max_size=5))
def test_digest_with_a_keyed_hmac_is_key_digest(secret: bytes, tokens: list[str]) -> None:
    base = keyed(secret)
    for token in tokens + tokens:  # reused: copying leaves the keyed one as it was
        assert digest_with(base, token) == key_digest(secret, token)
    assert digest_with(base, "\udcff") == key_digest(secret, "\udcff")  # a lone surrogate, as a header may carry


def test_key_tenant_finds_the_configs_keys_and_nothing_else() -> None:
    config = parse(CONFIG, "t.yaml", {})
    for _ in range(2):
        one, two = config.key_tenant("sk-one-key"), config.key_tenant("sk-two-key")
        assert one is not None and one.name == "one" and two is not None and two.name == "two"
        assert config.key_tenant("sk-three-key") is None
        assert config.key_tenant("sk-one-key ") is None
