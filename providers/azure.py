"""Azure OpenAI: the OpenAI adapter with Azure's URL and auth.

Classic surface: ``{api_base}/openai/deployments/{deployment}/{operation}?api-version=...``
with the ``api-key`` header. With ``api_version: v1`` the newer ``/openai/v1/``
surface is used, which takes the deployment name in the body's ``model``.
"""

from __future__ import annotations

from providers.base import Deployment
from providers.openai import OpenAIAdapter, api_key_of

DEFAULT_API_VERSION = "2024-10-21"


class AzureAdapter(OpenAIAdapter):
    kind = "azure"
    required_params: tuple[str, ...] = ("api_base",)
    default_base = None
    keeps_metadata_with_store = False

    def url(self, dep: Deployment, operation: str) -> str:
        base = self.base_url(dep)
        version = dep.api_version or DEFAULT_API_VERSION
        if version == "v1":
            base = base if base.endswith("/openai/v1") else f"{base}/openai/v1"
            return f"{base}/{operation}"
        return f"{base}/openai/deployments/{dep.model}/{operation}?api-version={version}"

    def auth_headers(self, dep: Deployment) -> dict[str, str]:
        key = api_key_of(dep)
        return {"api-key": key} if key else {}
