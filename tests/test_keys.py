"""Virtual keys end to end (issue 14): a real ``taskgate serve``, a real Redis, the official openai SDK.

Keys are stored only as a keyed hash (the Redis store is scanned for the plaintext), are
created, listed, revoked and rotated over the admin API, refuse tenant keys on admin
endpoints, honour model scope, expiry and budgets, and keys from the config keep working.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.conftest import Fakes, base_config, model_entry

ADMIN = "admin-key-123456"
TENANT_KEY = "tenant-key-abcdef"
PROMPT = [{"role": "user", "content": "hello there"}]


def config(fakes: Fakes, redis_url: str, **auth: Any) -> dict[str, Any]:
    priced = {**fakes.params("openai"), "input_cost_per_token": 0.001, "output_cost_per_token": 0.001}
    return base_config(redis_url, [model_entry("chat", priced, id="openai-a"),
                                   model_entry("other", priced, id="openai-b")],
                       auth={"keys": [{"key": ADMIN, "tenant": "ops", "admin": True},
                                      {"key": TENANT_KEY, "tenant": "acme"}], **auth})


def admin(gw: Any, method: str, path: str, key: str = ADMIN, **kw: Any) -> httpx.Response:
    return httpx.request(method, gw.url + path, headers={"authorization": f"Bearer {key}"}, timeout=10, **kw)


def sdk(gw: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def shared_gw(fakes: Fakes, redis_server: Any, module_gateway_factory: Any) -> Any:
    """One gateway for the module: the tests keep apart by their own tenants and keys."""
    return module_gateway_factory(config(fakes, redis_server.url))


@pytest.fixture
def gw(clean_fakes: Fakes, shared_gw: Any) -> Any:
    return shared_gw


def store_of(gw: Any) -> redis.Redis:
    import yaml

    url = yaml.safe_load(gw.config_path.read_text())["store"]["url"]
    return redis.Redis.from_url(url)


def test_create_use_list_revoke_and_hash_only_storage(gw: Any) -> None:
    made = admin(gw, "POST", "/v1/keys", json={"tenant": "acme-listed", "name": "alice", "models": ["chat"]})
    assert made.status_code == 200, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    assert key.startswith("tg-") and key_id.startswith("key_")
    reply = sdk(gw, key).chat.completions.create(model="chat", messages=PROMPT)
    assert reply.choices[0].message.content
    # the plaintext key is nowhere in the store: keys, values, hashes, streams
    store = store_of(gw)
    blob = b""
    for name in store.scan_iter(count=1000):
        kind = store.type(name)
        blob += name
        if kind == b"string":
            blob += store.get(name) or b""
        elif kind == b"hash":
            blob += b"".join(k + v for k, v in store.hgetall(name).items())
        elif kind == b"list":
            blob += b"".join(store.lrange(name, 0, -1))
        elif kind == b"set":
            blob += b"".join(store.smembers(name))
        elif kind == b"zset":
            blob += b"".join(m for m, _ in store.zrange(name, 0, -1, withscores=True))
        elif kind == b"stream":
            blob += b"".join(b"".join(k + v for k, v in f.items()) for _, f in store.xrange(name))
    assert key_id.encode() in blob  # the scan did see the key's records
    assert key.encode() not in blob and key[3:].encode() not in blob
    assert ADMIN.encode() not in blob and TENANT_KEY.encode() not in blob
    listed = admin(gw, "GET", "/v1/keys", params={"tenant": "acme-listed"}).json()["data"]
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0] and "digest" not in listed[0]
    assert listed[0]["models"] == ["chat"] and listed[0]["actor"] == "human"
    revoked = admin(gw, "POST", f"/v1/keys/{key_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_keys"] == [key_id]
    time.sleep(1.1)  # the documented bound: a replica may use a cached record for up to 1 s
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, key).chat.completions.create(model="chat", messages=PROMPT)


def test_rotate_keeps_id_and_scope_and_old_key_stops(gw: Any) -> None:
    made = admin(gw, "POST", "/v1/keys", json={"tenant": "acme", "models": ["chat"], "rpm": 100}).json()
    rotated = admin(gw, "POST", f"/v1/keys/{made['id']}/rotate").json()
    assert rotated["id"] == made["id"] and rotated["models"] == ["chat"] and rotated["rpm"] == 100
    assert rotated["key"] != made["key"]
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, made["key"]).chat.completions.create(model="chat", messages=PROMPT)
    assert sdk(gw, rotated["key"]).chat.completions.create(model="chat", messages=PROMPT).choices


def test_model_scope_403_and_models_list(gw: Any) -> None:
    key = admin(gw, "POST", "/v1/keys", json={"tenant": "acme", "models": ["chat"]}).json()["key"]
    client = sdk(gw, key)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="other", messages=PROMPT)
    assert denied.value.code == "model_not_allowed"
    assert [m.id for m in client.models.list()] == ["chat"]
    assert sorted(m.id for m in sdk(gw, TENANT_KEY).models.list()) == ["chat", "other"]


def test_key_budget_429(gw: Any) -> None:
    # one call costs about 0.01-0.05 USD at 0.001/token; the worst case reservation is larger
    key = admin(gw, "POST", "/v1/keys", json={"tenant": "acme", "budget_usd": "0.0001"}).json()["key"]
    with pytest.raises(openai.RateLimitError) as over:
        sdk(gw, key).chat.completions.create(model="chat", messages=PROMPT, max_tokens=5)
    assert over.value.code == "budget_exceeded"


def test_expiry_and_unknown_keys_are_401(gw: Any) -> None:
    made = admin(gw, "POST", "/v1/keys", json={"tenant": "acme", "expires": "2s"}).json()
    assert sdk(gw, made["key"]).chat.completions.create(model="chat", messages=PROMPT).choices
    time.sleep(2.2)
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, made["key"]).chat.completions.create(model="chat", messages=PROMPT)
    for bad in ("tg-not-a-key", "nope-nope-nope"):
        with pytest.raises(openai.AuthenticationError):
            sdk(gw, bad).chat.completions.create(model="chat", messages=PROMPT)


def test_config_keys_still_work(gw: Any) -> None:
    assert sdk(gw, TENANT_KEY).chat.completions.create(model="chat", messages=PROMPT).choices
    assert admin(gw, "GET", "/v1/keys").status_code == 200


@pytest.mark.parametrize("method,path", [("POST", "/v1/keys"), ("GET", "/v1/keys"), ("GET", "/v1/keys/key_0123456789abcdef"),
                                         ("POST", "/v1/keys/key_0123456789abcdef/revoke"),
                                         ("POST", "/v1/keys/key_0123456789abcdef/rotate")])
def test_admin_endpoints_refuse_tenant_keys(gw: Any, method: str, path: str) -> None:
    refused = admin(gw, method, path, key=TENANT_KEY, json={"tenant": "acme"} if method == "POST" else None)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "admin_required"
    virtual = admin(gw, "POST", "/v1/keys", json={"tenant": "acme"}).json()["key"]
    assert admin(gw, method, path, key=virtual).status_code == 403


@pytest.mark.parametrize("body,param", [
    ({}, "tenant"), ({"tenant": "a b"}, "tenant"), ({"tenant": "acme", "models": "chat"}, "models"),
    ({"tenant": "acme", "models": []}, "models"), ({"tenant": "acme", "budget_usd": "1e999999"}, "budget_usd"),
    ({"tenant": "acme", "budget_usd": -1}, "budget_usd"), ({"tenant": "acme", "budget_usd": "nan"}, "budget_usd"),
    ({"tenant": "acme", "rpm": 0}, "rpm"), ({"tenant": "acme", "rpm": 1.5}, "rpm"), ({"tenant": "acme", "tpm": True}, "tpm"),
    ({"tenant": "acme", "expires": "yesterday"}, "expires"), ({"tenant": "acme", "expires": 1.0}, "expires"),
    ({"tenant": "acme", "admin": "yes"}, "admin"), ({"tenant": "acme", "agent_of": "bob"}, "agent_of"),
    ({"tenant": "acme", "bogus": 1}, "bogus"), ({"tenant": "acme", "name": "x" * 65}, "name"),
])
def test_create_validates_every_field(gw: Any, body: dict[str, Any], param: str) -> None:
    r = admin(gw, "POST", "/v1/keys", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"


def test_bad_bodies_and_unknown_ids(gw: Any) -> None:
    assert admin(gw, "POST", "/v1/keys", content=b"[1,2]").status_code == 400
    assert admin(gw, "POST", "/v1/keys", content=b"{" * 10000).status_code == 400
    assert admin(gw, "GET", "/v1/keys/key_0123456789abcdef").status_code == 404
    assert admin(gw, "GET", "/v1/keys/../../etc").status_code == 404
    assert admin(gw, "GET", "/v1/keys", params={"tenant": "{x}"}).status_code == 400
