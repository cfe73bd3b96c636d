"""Taskgate: an OpenAI-compatible LLM gateway that prices AI work per completed task."""

__version__ = "0.1.0"
