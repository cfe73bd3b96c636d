"""A Google Cloud service account key made for the tests (an RSA key generated once per session),
and how a fake checks the access token google-auth makes from it (a JWT signed with the key)."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_EMAIL = "taskgate-test@test-project.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@functools.cache
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def service_account_json() -> str:
    pem = _key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "test-project", "private_key_id": "test-key-1",
                       "private_key": pem, "client_email": CLIENT_EMAIL, "client_id": "1",
                       "token_uri": "https://oauth2.googleapis.com/token"})


def public_pem() -> str:
    return _key().public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def check_token(token: str) -> str | None:
    """Why ``token`` is not a valid access token for the test account (None: it is)."""
    from google.auth import jwt

    try:
        claims: dict[str, Any] = jwt.decode(token, certs=public_pem(), verify=True)
    except Exception as exc:  # a bad signature, a malformed token
        return f"invalid token: {exc}"
    if claims.get("iss") != CLIENT_EMAIL or claims.get("sub") != CLIENT_EMAIL:
        return "token issued by another account"
    if SCOPE not in str(claims.get("scope", "")).split():
        return "token lacks the cloud-platform scope"
    if float(claims.get("exp", 0)) < time.time():
        return "token expired"
    return None
