"""Routing and compliance policies: pure functions over plain data."""
