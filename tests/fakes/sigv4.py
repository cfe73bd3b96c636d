"""Server-side SigV4 verification for the Bedrock fake.

The request is rebuilt from what arrived on the wire: the RAW path (so `%3A` in a model
id stays `%3A`, and botocore's canonicalisation quotes it again to `%253A`, exactly as
the signing client did), the raw query string, only the headers named in SignedHeaders
and the body. The timestamp comes from X-Amz-Date, the signature is recomputed with
botocore's SigV4Auth and compared in constant time."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

MAX_SKEW = datetime.timedelta(minutes=5)
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)\s*")


@dataclass
class AuthError:
    status: int
    error_type: str
    message: str


class _Verifier(SigV4Auth):
    """SigV4Auth that signs exactly the headers the client listed (no blacklist, no extras)."""

    def __init__(self, credentials, service, region, signed: HTTPHeaders):
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request):
        return self._signed


def verify(method: str, raw_path: str, query_string: str, header_pairs: list[tuple[str, str]], body: bytes,
           *, access_key: str, secret_key: str, session_token: str | None, region: str,
           service: str = "bedrock", now: datetime.datetime | None = None) -> AuthError | None:
    headers: dict[str, list[str]] = {}
    for k, v in header_pairs:
        headers.setdefault(k.lower(), []).append(v)
    auth = (headers.get("authorization") or [""])[0]
    if not auth:
        return AuthError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    m = _AUTH.fullmatch(auth)
    if m is None:
        return AuthError(403, "IncompleteSignatureException", f"Authorization header requires 'Credential', "
                         f"'Signature' and 'SignedHeaders' parameters. Authorization={auth}")
    credential, signed_names, signature = m.group(1), m.group(2).split(";"), m.group(3)
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return AuthError(403, "IncompleteSignatureException", f"Credential is malformed: {credential}")
    akid, scope_date, scope_region, scope_service, _ = parts
    if akid != access_key:
        return AuthError(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    token = (headers.get("x-amz-security-token") or [None])[0]
    if token != session_token:
        return AuthError(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = (headers.get("x-amz-date") or [""])[0]
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return AuthError(403, "IncompleteSignatureException", "Authorization header requires existence of either "
                         "a 'X-Amz-Date' or a 'Date' header.")
    if scope_date != amz_date[:8]:
        return AuthError(403, "InvalidSignatureException", f"Date in Credential scope does not match YYYYMMDD from "
                         f"ISO-8601 version of date from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.")
    if scope_region != region:
        return AuthError(403, "InvalidSignatureException", f"Credential should be scoped to a valid region. "
                         f"Got '{scope_region}', expected '{region}'.")
    if scope_service != service:
        return AuthError(403, "InvalidSignatureException", f"Credential should be scoped to correct service: "
                         f"'{service}'. ")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if abs(now - when) > MAX_SKEW:
        return AuthError(403, "InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than "
                         f"{(now - MAX_SKEW).strftime('%Y%m%dT%H%M%SZ')} ({now.strftime('%Y%m%dT%H%M%SZ')} - 5 min.)")
    if "host" not in signed_names:
        return AuthError(403, "InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the "
                         "AWS Authorization.")
    content_sha = (headers.get("x-amz-content-sha256") or [None])[0]
    if content_sha not in (None, "UNSIGNED-PAYLOAD") and content_sha != hashlib.sha256(body).hexdigest():
        return AuthError(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not "
                         "match what was computed.")

    signed = HTTPHeaders()
    for name in signed_names:
        for value in headers.get(name, []):
            signed[name] = value
    url = "http://" + (headers.get("host") or ["localhost"])[0] + raw_path
    if query_string:
        url += "?" + query_string
    request = AWSRequest(method=method, url=url, data=body,
                         headers={k: v for k, v in signed.items() if k == "x-amz-content-sha256"})
    request.context["timestamp"] = amz_date
    verifier = _Verifier(Credentials(access_key, secret_key, session_token), service, region, signed)
    canonical = verifier.canonical_request(request)
    expected = verifier.signature(verifier.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        return AuthError(403, "InvalidSignatureException", "The request signature we calculated does not match the "
                         "signature you provided. Check your AWS Secret Access Key and signing method. Consult the "
                         "service documentation for details.")
    return None
