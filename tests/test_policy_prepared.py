"""The body-independent part of a decision, prepared once and reused (policies/prepared.py), decides
exactly as a decision that works everything out afresh: over random configs, random requests of one
tenant and model (so one Prepared sees many bodies, headers and final data classes), random health.
And the gateway's cache of it (gateway/proxy/router.py) dies with the snapshot while breakers are
still read on every request."""

from __future__ import annotations

from dataclasses import replace
from random import Random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.accounting.metrics import Metrics
from gateway.config.load import parse
from gateway.proxy.router import Router
from gateway.snapshot import build_snapshot
from gateway.upstream.health import HealthBook
from policies.decide import RequestFacts, decide, still_allowed
from policies.health import BreakerState
from policies.prepared import Prepared, prepare
from tests.test_policy_decide import NOW, PII_TEXT, body, scenarios


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_a_reused_prepared_decides_as_a_fresh_decision(s: dict[str, Any], data: st.DataObject) -> None:
    policies, deps, first = s["policies"], s["deps"], s["facts"]
    names = policies.compliance.class_names()
    kept: dict[str | None, Prepared] = {}
    for i in range(data.draw(st.integers(2, 6))):
        kinds = data.draw(st.lists(st.sampled_from(sorted(PII_TEXT)), max_size=3))
        text = " and ".join(PII_TEXT[k] for k in kinds) or "hello"
        header = first.data_class_header if i == 0 else data.draw(st.none() | st.sampled_from(names + ["bogus"]))
        facts = RequestFacts("t", "chat", body(text, stream=data.draw(st.booleans())), header,
                             data.draw(st.integers(0, 2000)), data.draw(st.none() | st.integers(0, 10**11)))
        if header not in kept:
            kept[header] = prepare("t", "chat", header, deps, policies.routing, policies.compliance,
                                   policies.tenants)
        seed, rand = data.draw(st.integers(0, 2**32)), data.draw(st.floats(0, 0.999))
        args = (facts, deps, policies, s["health"], s["latency"], s["prices"], NOW, rand)
        fresh = decide(*args, outcomes=s["outcomes"], rng=Random(seed))
        reused = decide(*args, outcomes=s["outcomes"], rng=Random(seed), prepared=kept[header])
        assert reused == fresh
        assert reused.explain() == fresh.explain()
        assert reused.compliance is fresh.compliance
        # a request's decision (lite: no considerations, no reasons) routes exactly as explain's
        lite = decide(*args, outcomes=s["outcomes"], rng=Random(seed), prepared=kept[header], lite=True)
        assert (lite.ordered, lite.chosen, lite.denial, lite.data_class, lite.body, lite.audit_events,
                lite.pii_found, lite.redacted, lite.probes, lite.strategy, lite.strategy_detail) == (
                    fresh.ordered, fresh.chosen, fresh.denial, fresh.data_class, fresh.body, fresh.audit_events,
                    fresh.pii_found, fresh.redacted, fresh.probes, fresh.strategy, fresh.strategy_detail)
        if lite.denial is not None:
            assert lite == fresh  # a denial is always complete
        else:
            assert lite.considered == ()
        assert lite.passing == fresh.passing
        for dep in deps:  # still_allowed: by the remembered set exactly as by check_deployment
            by_check = replace(fresh, passing=None)
            assert still_allowed(lite, dep) == still_allowed(fresh, dep) == still_allowed(by_check, dep)


CONFIG = """
model_list:
  - {model_name: m, litellm_params: {model: openai/gpt-4o-mini, api_key: k}, model_info: {id: a, region: eu}}
  - {model_name: m, litellm_params: {model: openai/gpt-4o, api_key: k}, model_info: {id: b, region: us}}
tenants:
  acme: {region: us}
compliance:
  default_class: internal
  data_classes:
    - {name: internal, regions: [REGIONS]}
routing: {default_strategy: latency}
"""
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _router() -> Router:
    return Router(HealthBook(redis=None), Metrics(), lambda entry: None)  # type: ignore[arg-type]


def test_the_cache_dies_with_the_snapshot_and_breakers_are_read_per_request() -> None:
    router = _router()
    both = build_snapshot(parse(CONFIG.replace("REGIONS", "eu, us"), "t.yaml", {}))
    group = both.config.groups["m"]
    assert [d.id for d in router.decide(both, "acme", "m", group, BODY, None, None).ordered] == ["a", "b"]
    assert [d.id for d in router.decide(both, "acme", "m", group, BODY, None, None).ordered] == ["a", "b"]
    router.health.breakers["a"] = BreakerState("open", 5, 1e18, 0, "server_error")
    assert [d.id for d in router.decide(both, "acme", "m", group, BODY, None, None).ordered] == ["b"]
    del router.health.breakers["a"]
    # a reload: the new snapshot's compliance applies at once, to the same tenant, model and header
    eu = build_snapshot(parse(CONFIG.replace("REGIONS", "eu"), "t.yaml", {}))
    decision = router.decide(eu, "acme", "m", eu.config.groups["m"], BODY, None, None)
    assert [d.id for d in decision.ordered] == ["a"]
    explained = router.decide(eu, "acme", "m", eu.config.groups["m"], BODY, None, None, explain=True)
    assert decision.ordered == explained.ordered and decision.considered == ()
    assert [c["deployment"] for c in explained.explain()["considered"]] == ["a", "b"]
    # and back: nothing of the eu-only snapshot is left
    assert [d.id for d in router.decide(both, "acme", "m", group, BODY, None, None).ordered] == ["a", "b"]


def test_each_header_and_tenant_has_its_own_entry() -> None:
    router = _router()
    snap = build_snapshot(parse(CONFIG.replace("REGIONS", "eu, us"), "t.yaml", {}))
    group = snap.config.groups["m"]
    assert router.decide(snap, "acme", "m", group, BODY, "bogus", None).denial is not None
    assert router.decide(snap, "acme", "m", group, BODY, None, None).denial is None
    other = router.decide(snap, "other", "m", group, BODY, None, None)
    assert other.tenant.name == "other" and other.tenant.region is None


def test_still_allowed_refuses_what_compliance_does_not_pass_even_if_ordered() -> None:
    """Defence in depth: a deployment in ``ordered`` that check_deployment does not pass for the
    decision's class and tenant (here: planted by hand) is refused, by the remembered set and without it."""
    router = _router()
    eu = build_snapshot(parse(CONFIG.replace("REGIONS", "eu"), "t.yaml", {}))
    group = eu.config.groups["m"]
    decision = router.decide(eu, "acme", "m", group, BODY, None, None)
    a, b = group
    assert decision.ordered == (a,) and decision.passing == frozenset({"a"})
    assert still_allowed(decision, a)
    planted = replace(decision, ordered=(a, b))
    assert not still_allowed(planted, b)
    assert not still_allowed(replace(planted, passing=None), b)
    assert still_allowed(replace(planted, passing=None), a)
    assert not still_allowed(replace(decision, ordered=()), a)  # and nothing that was not ordered
