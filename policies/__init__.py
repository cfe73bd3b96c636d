"""Routing and compliance policies: pure functions over plain data (see README.md).

``decide.decide`` is the entry point; ``routing.plan`` is the older priority-only router.
"""
