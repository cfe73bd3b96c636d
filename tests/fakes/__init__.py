"""Strict fake upstream servers speaking the real provider wire protocols.

Each fake runs on 127.0.0.1 (real HTTP, uvicorn in a background thread), rejects what
the real service rejects, records requests and counts what the provider would bill.
See the module docstrings for each provider's rules."""

from .anthropic_fake import AnthropicFake
from .azure_fake import AzureFake
from .bedrock_fake import BedrockFake
from .gemini_fake import GeminiFake
from .ollama_fake import OllamaFake
from .openai_fake import OpenAIFake
from .server import FakeServer

__all__ = ["FakeServer", "AnthropicFake", "OpenAIFake", "AzureFake", "BedrockFake", "OllamaFake", "GeminiFake"]
