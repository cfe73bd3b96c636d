"""The OpenAI embeddings front: ``POST /v1/embeddings``."""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest, GatewayError, error_body, error_headers
from gateway.fronts.base import Headers
from providers.canonical import EmbeddingsRequest, EmbeddingsResult
from providers.openai_wire import embedding_list


class OpenAIEmbeddingsFront:
    name = "embeddings"

    def parse(self, body: dict[str, Any]) -> EmbeddingsRequest:
        fmt = body.get("encoding_format")
        if fmt is not None and fmt not in ("float", "base64"):
            raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format",
                             code="invalid_value")
        return EmbeddingsRequest(body, fmt)

    def encode_result(self, result: EmbeddingsResult, model: str, req: EmbeddingsRequest) -> bytes:
        if result.raw is not None:
            return result.raw
        return embedding_list(result.vectors or (), model, result.usage.input_tokens, req.encoding_format)

    def error_response(self, err: GatewayError) -> tuple[int, Headers, bytes]:
        return err.status, error_headers(err), error_body(err)
