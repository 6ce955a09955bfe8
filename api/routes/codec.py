"""The codec server the Temporal Web UI and ``temporal`` CLI decode payloads through (Temporal's codec protocol).

``POST /codec/decode`` and ``/codec/encode`` take and return ``Payloads`` as protobuf JSON, for the namespace in
``X-Namespace``. They read every tenant's data, so they need the operator's codec token, not a tenant's API key:
``Authorization: Bearer <token>`` (``temporal workflow show --codec-endpoint … --codec-auth "Bearer …"``) or the
HttpOnly cookie that ``POST /codec/login`` sets — the one credential a browser attaches to the Web UI's
``fetch`` (the UI's "include credentials" codec setting). CORS answers only the configured Web UI origin.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from google.protobuf import json_format
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payloads

from api.deps import StateDep
from conveyor.codec import EncryptionCodec, codec_session_value, codec_token, load_keys
from conveyor.errors import ConveyorError
from conveyor.settings import Settings

router = APIRouter(prefix="/codec", tags=["codec"])

#: The sign-in cookie: HttpOnly, SameSite=Strict, sent only to /codec.
SESSION_COOKIE = "conveyor_codec"
SESSION_MAX_AGE_S = 8 * 3600
#: Headers the Web UI sends with a codec request (a preflight asks for them).
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conveyor codec sign-in</title></head>
<body><h1>Decode payloads in the Temporal Web UI</h1>
<p>Enter the operator's codec token (CONVEYOR_CODEC_TOKEN, or the codec-token file of a local install).</p>
<form method="post" action="login"><input type="password" name="token" autocomplete="off" required>
<button type="submit">Sign in</button></form></body></html>
"""


class CodecPayload(BaseModel):
    """One Temporal ``Payload`` in protobuf JSON: metadata values and data are base64."""

    metadata: dict[str, str] = Field(default_factory=dict, description="Metadata values, base64.")
    data: str = Field("", description="The payload's bytes, base64.")


class CodecPayloads(BaseModel):
    """Temporal ``Payloads`` in protobuf JSON, the codec protocol's request and response body."""

    payloads: list[CodecPayload] = Field(default_factory=list, description="The payloads, in order.")


def ui_origin(settings: Settings) -> str:
    """The Web UI's origin (scheme://host[:port]), the only one CORS answers."""
    parts = urlsplit(settings.temporal_ui_url)
    return f"{parts.scheme}://{parts.netloc}"


def cors_headers(request: Request, settings: Settings) -> dict[str, str]:
    """CORS headers for a request from the Web UI's origin (none for any other origin)."""
    origin = request.headers.get("origin")
    if origin is None or origin != ui_origin(settings):
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def _error(request: Request, settings: Settings, status: int, code: str, message: str) -> JSONResponse:
    """An error body in the API's shape, with the UI's CORS headers so the UI can show it."""
    kind = {400: "BadInput", 401: "Unauthorized"}.get(status, "Internal")
    body = {"error": {"code": code, "kind": kind, "message": message}}
    return JSONResponse(body, status_code=status, headers=cors_headers(request, settings))


def authorized(request: Request, token: str | None) -> bool:
    """Whether the request carries the codec token (Bearer) or the sign-in cookie derived from it."""
    if token is None:
        return False
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), codec_session_value(token).encode())


def _codec(request: Request, settings: Settings) -> EncryptionCodec:
    """The app's codec (its keys are read once)."""
    codec: EncryptionCodec | None = getattr(request.app.state, "payload_codec", None)
    if codec is None:
        codec = EncryptionCodec(load_keys(settings))
        request.app.state.payload_codec = codec
    return codec


def _token(request: Request, settings: Settings) -> str | None:
    """The codec token (read once); None disables the codec server."""
    if not hasattr(request.app.state, "codec_token"):
        request.app.state.codec_token = codec_token(settings)
    token: str | None = request.app.state.codec_token
    return token


async def _convert(request: Request, state: StateDep, namespace: str | None, decode: bool) -> Response:
    """Check the credential and namespace, then run the codec over the body's payloads."""
    settings = state.settings
    if not authorized(request, _token(request, settings)):
        return _error(
            request,
            settings,
            401,
            "CODEC_UNAUTHORIZED",
            "send the codec token as `Authorization: Bearer <token>` or sign in at /codec/login",
        )
    if namespace is not None and namespace != settings.temporal_namespace:
        return _error(
            request, settings, 400, "NAMESPACE_UNKNOWN", f"this codec serves namespace {settings.temporal_namespace!r}"
        )
    try:
        message = json_format.Parse(await request.body(), Payloads(), ignore_unknown_fields=True)
    except json_format.ParseError as err:
        return _error(request, settings, 400, "BAD_PAYLOADS", f"the body is not Payloads in protobuf JSON: {err}")
    codec = _codec(request, settings)
    try:
        converted = await (codec.decode if decode else codec.encode)(list(message.payloads))
    except ConveyorError as err:
        return _error(request, settings, 400, err.code, err.message)
    body = json_format.MessageToDict(Payloads(payloads=converted))
    return JSONResponse(body, headers=cors_headers(request, settings))


NamespaceHeader = Annotated[str | None, Header(alias="X-Namespace", description="The payloads' namespace.")]

_BODY = {"requestBody": {"content": {"application/json": {"schema": CodecPayloads.model_json_schema()}}}}
_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"model": CodecPayloads, "description": "The converted payloads, in order."},
    400: {"description": "Not Payloads JSON, another namespace, or a payload under an unknown key id."},
    401: {"description": "No codec token and no sign-in cookie."},
}


@router.post("/decode", response_model=CodecPayloads, responses=_RESPONSES, openapi_extra=_BODY)
async def decode(request: Request, state: StateDep, namespace: NamespaceHeader = None) -> Response:
    """Decrypt payloads (unencrypted ones come back unchanged)."""
    return await _convert(request, state, namespace, decode=True)


@router.post("/encode", response_model=CodecPayloads, responses=_RESPONSES, openapi_extra=_BODY)
async def encode(request: Request, state: StateDep, namespace: NamespaceHeader = None) -> Response:
    """Encrypt payloads with the current key."""
    return await _convert(request, state, namespace, decode=False)


@router.options("/{operation}", include_in_schema=False)
async def preflight(request: Request, state: StateDep, operation: str) -> Response:
    """CORS preflight: allowed for the Web UI's origin only (no credential is needed to ask)."""
    headers = cors_headers(request, state.settings)
    if "Access-Control-Allow-Origin" in headers:
        headers |= {
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        }
    return Response(status_code=204, headers=headers)


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page() -> HTMLResponse:
    """A form where the operator enters the codec token once per browser."""
    return HTMLResponse(LOGIN_PAGE)


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(request: Request, state: StateDep) -> Response:
    """Check the token and set the HttpOnly sign-in cookie the Web UI's codec requests carry; then go to the UI."""
    settings = state.settings
    token = _token(request, settings)
    given = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [""])[0]
    if token is None or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HTMLResponse(LOGIN_PAGE.replace("<form", "<p><strong>Wrong token.</strong></p><form"), status_code=401)
    response = RedirectResponse(settings.temporal_ui_url, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        codec_session_value(token),
        max_age=SESSION_MAX_AGE_S,
        path="/codec",
        httponly=True,
        samesite="strict",
        secure=settings.api_url.startswith("https://") or request.url.scheme == "https",
    )
    return response
