"""The scoring API: FastAPI over a finished run folder (``shopseg serve RUN_DIR``).

Routes: ``GET /health``, ``GET /segments``, ``GET /segments/{id}``, ``GET /customers/{id}``, ``POST /score``,
``GET /items/{id}/similar``; the OpenAPI document is at ``/openapi.json`` (and in ``docs/openapi.json``).

Every error has one JSON shape, ``{"error": {"code": ..., "message": ..., "details": ...}}``: a
:class:`~shopseg.errors.ShopsegError` becomes a 4xx with the library's message, request validation a 422,
a body above the size limit a 413, a missing or wrong API key a 401. The run is read through
:class:`~shopseg.serve.rundir.RunData` (read-only, loaded once at start-up, safe across threads).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.util
import inspect
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopseg.errors import (
    BackendError,
    ConfigError,
    InputError,
    IntegrityError,
    NotFittedError,
    NotFoundError,
    ShopsegError,
)
from shopseg.serve.rundir import MAX_SCORE_ROWS, RunData, ScoreJob, ScoreResult, json_bytes

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ScoreBatcher", "create_app", "default_workers", "openapi_document", "serve"]

log = logging.getLogger(__name__)

#: request bodies above this many bytes get 413 (a customer's orders fit in far less)
DEFAULT_MAX_BODY_BYTES = 1_048_576
API_KEY_HEADER = "X-API-Key"
#: the most order lines one batched scoring pass takes (requests beyond wait for the next pass)
BATCH_MAX_ROWS = 50_000

# ------------------------------------------------------------------------------------------------ schemas

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Cell = Annotated[str, StringConstraints(max_length=1000)] | float | int | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Model):
    code: str = Field(description="Short machine-readable code, e.g. not_found, unauthorized, validation_error.")
    message: str = Field(description="What went wrong and how to fix it, in words.")
    details: list[dict[str, JsonValue]] | None = Field(None, description="Per-field problems of a 422.")


class ErrorResponse(_Model):
    error: ErrorBody


class Health(_Model):
    status: Literal["ok"]
    run_id: str = Field(description="Stable id of the served run (SHA-256 of its manifest, 16 hex digits).")
    customers: int
    segments: int
    version: str = Field(description="shopseg version serving the run.")


class SegmentSummary(_Model):
    segment: int
    name: str
    action: str
    size: int = Field(description="Customers in the segment.")
    share_customers: float | None
    share_revenue: float | None


class SegmentList(_Model):
    run_id: str
    segments: list[SegmentSummary]


class FeatureProfile(_Model):
    mean: float | None
    median: float | None
    z: float | None = Field(description="Segment mean on the model's standardised scale (population: 0).")


class Product(_Model):
    rank: int
    product_id: str
    product_name: str | None
    buyers: int = Field(description="Customers of the segment who bought the product.")
    buyer_share: float | None = Field(description="buyers / customers of the segment with a purchase.")
    lift: float | None = Field(description="buyer_share / the product's share among all customers.")


class SegmentDetail(SegmentSummary):
    earned_by: str | None = Field(description="The features that earned the segment its name.")
    name_rule: str | None = Field(description="The naming rule that gave the name, when the run records it.")
    profile: dict[str, FeatureProfile]
    rules: JsonValue = Field(
        description="Readable rules that rebuild the segment (rule text, precision, recall, fidelity, conditions) "
        "when the run has them, else null."
    )
    top_products: list[Product]
    banner_products: list[Product] = Field(
        description="Highest-lift products bought by at least 5% of the segment (and 3 buyers)."
    )
    banner_plan: list[dict[str, JsonValue]] | None = Field(
        description="The run's banner decision per slot (promote internally or sell, with its economics), if any."
    )


class Recommendation(_Model):
    rank: int
    product_id: str
    product_name: str | None
    score: float | None
    source: str = Field(description="Which recommender put the product on the list.")


class Customer(_Model):
    customer_id: str
    segment: int
    segment_name: str
    action: str
    features: dict[str, float | None] = Field(description="Numeric feature values (see docs/method.md).")
    attributes: dict[str, JsonValue] = Field(description="Other columns: first/last purchase, flags.")
    recommendations: list[Recommendation]


class ScoredCustomer(Customer):
    known: bool = Field(description="Whether the served run already has a customer with this id.")


class ScoreRequest(_Model):
    """A customer's raw order lines; columns in the run's source names, canonical names or common synonyms."""

    orders: list[
        Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Cell], Field(min_length=1)]
    ] = Field(
        min_length=1,
        max_length=MAX_SCORE_ROWS,
        description="Order lines as objects, e.g. {order_id, product_id, quantity, unit_price, ts}. Text is "
        "parsed like a CSV file's: dates ISO 8601 (or the run's own format), numbers with a decimal point.",
    )
    customer_id: Id | None = Field(
        None, description="Customer of every line (overrides a customer column); required if lines have none."
    )
    as_of: datetime | None = Field(
        None, description="Reference time for recency; default: the run's as-of, or the day after the last order."
    )
    n: int = Field(10, ge=1, le=100, description="Recommendations per customer.")


class ScoreResponse(_Model):
    run_id: str
    as_of: datetime
    input_rows: int
    clean_rows: int
    quarantined: dict[str, int] = Field(description="Lines set aside, by cleaning rule.")
    notes: list[str]
    customers: list[ScoredCustomer]


class SimilarItem(_Model):
    product_id: str
    product_name: str | None
    co_buyers: int = Field(description="Customers who bought both products.")
    buyers: int = Field(description="Customers who bought this product.")
    confidence: float = Field(description="co_buyers / buyers of the requested product.")
    lift: float = Field(description="confidence / this product's share of all customers (1 = no association).")


class SimilarItems(_Model):
    product_id: str
    product_name: str | None
    buyers: int
    by: Literal["count", "lift"]
    similar: list[SimilarItem]


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (when the server has one)."},
    413: {"model": ErrorResponse, "description": "Request body above the size limit."},
    422: {"model": ErrorResponse, "description": "Invalid request or unusable data."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "Unknown id."}}


# ------------------------------------------------------------------------------------------------ errors


def _error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "ApiKey"
    return JSONResponse({"error": body}, status_code=status, headers=headers or None)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
}


def _status_of(exc: ShopsegError) -> tuple[int, str]:
    if isinstance(exc, NotFoundError):
        return 404, "not_found"
    if isinstance(exc, IntegrityError):
        return 500, "integrity_error"
    if isinstance(exc, NotFittedError):
        return 409, "model_mismatch"
    if isinstance(exc, BackendError):
        return 503, "backend_error"
    if isinstance(exc, ConfigError):
        return 400, "bad_request"
    if isinstance(exc, InputError):
        return 422, type(exc).__name__.removesuffix("Error").lower() + "_error"
    return 400, "error"


def _install_error_handlers(app: FastAPI) -> None:
    async def shopseg_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ShopsegError)
        status, code = _status_of(exc)
        return _error(status, code, str(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs or /openapi.json"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return _error(exc.status_code, code, message, headers=dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = []
        for e in exc.errors():
            details.append(
                {
                    "loc": [str(x) for x in e.get("loc", ())],
                    "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", "")),
                }
            )
        words = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5])
        more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
        return _error(422, "validation_error", f"invalid request: {words}{more}", jsonable_encoder(details))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", f"unexpected {type(exc).__name__}; this is a bug, please report it")

    app.add_exception_handler(ShopsegError, shopseg_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


class BodyLimit:
    """Rejects request bodies above ``max_bytes`` with 413 in the API's error shape: at once when the
    Content-Length says so, else as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body above the limit of {self.max_bytes:,} bytes; send fewer order lines per call"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0
                if size > self.max_bytes:
                    await _error(413, "payload_too_large", message)(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


class FastPaths:
    """The two hot routes answered before FastAPI's routing, dependency injection and validation layers, which
    cost more than the work itself on a small machine:

    * ``GET /customers/{id}`` from the customer's ready-made JSON body (:meth:`RunData.customer_json`);
    * ``POST /score`` with a JSON body (of a declared length) that :class:`ScoreRequest` accepts, handed to the
      :class:`ScoreBatcher`.

    Anything it is not sure of (another route or method, an unknown customer, a missing or wrong API key, a
    query other than ``n=1..100``, a body the model refuses, no Content-Length) goes on to the app unchanged (the
    body it read is replayed), whose routes give the same answers and the usual errors. Sits inside
    :class:`BodyLimit`, so a body it reads is within the limit."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.state.data is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and scope["path"].startswith("/customers/"):
            body = self._lookup(scope)
            if body is not None:
                await _send_json(send, 200, body)
                return
        elif scope["method"] == "POST" and scope["path"] == "/score" and self._authorised(scope):
            await self._score(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        expected: str | None = self.state.api_key
        if expected is None:
            return True
        given = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
        return given is not None and hmac.compare_digest(given, expected.encode("utf-8"))

    def _lookup(self, scope: Scope) -> bytes | None:
        data: RunData = self.state.data
        customer_id: str = scope["path"][11:]
        if not 0 < len(customer_id) <= 200 or "/" in customer_id:
            return None
        query: bytes = scope.get("query_string", b"")
        n = 10
        if query:
            if not query.startswith(b"n=") or not query[2:].isdigit() or len(query) > 5:
                return None
            n = int(query[2:])
            if not 1 <= n <= 100:
                return None
        if not self._authorised(scope):
            return None
        try:
            return data.customer_json(customer_id, n)
        except ShopsegError:
            return None

    async def _score(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        json_body = headers.get(b"content-type", b"").split(b";")[0].strip().lower() == b"application/json"
        if not json_body or b"content-length" not in headers:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            body = ScoreRequest.model_validate_json(raw)
        except ValueError:  # FastAPI's route words the 422 (or 400) the usual way
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": raw, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        data: RunData = self.state.data
        batcher: ScoreBatcher = self.state.batcher
        try:
            result = await batcher.score(
                ScoreJob(body.orders, customer_id=body.customer_id, as_of=body.as_of, n=body.n)
            )
        except ShopsegError as exc:
            status, code = _status_of(exc)
            await _error(status, code, str(exc))(scope, receive, send)
            return
        await _send_json(send, 200, _score_body(data, result))


def _score_body(data: RunData, result: ScoreResult) -> bytes:
    """The JSON body of a ``POST /score`` answer (the same from the fast path and the route)."""
    return json_bytes({"run_id": data.run_id, **result.to_dict()})


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ScoreBatcher:
    """Micro-batching of ``POST /score``: requests queue, and one pass at a time scores everything queued (up to
    ``max_rows`` order lines) with :meth:`RunData.score_many` in a worker thread, then hands each request its own
    result or error. An idle server scores a lone request at once; under load, the requests that arrive while
    a pass runs share the next one, so the fixed cost of a pass (its SQL statements) is paid once for all."""

    def __init__(
        self, data: RunData, *, max_rows: int = BATCH_MAX_ROWS, linger_s: float = 0.025, linger_min: int = 8
    ) -> None:
        self.data = data
        self.max_rows = max_rows
        self.linger_s = linger_s
        self.linger_min = linger_min
        self._queue: list[tuple[ScoreJob, asyncio.Future[ScoreResult]]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: requests to wait for (briefly) before the next pass, and when the last pass ended: kept between drain
        #: tasks, since the queue is often empty for a moment right after a pass while its clients send again
        self._target = 0
        self._last_end = 0.0
        #: passes run and requests scored (for tests and curiosity)
        self.passes = 0
        self.scored = 0

    async def score(self, job: ScoreJob) -> ScoreResult:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests start one per client): nothing carries over
            self._loop, self._queue, self._task, self._target = loop, [], None, 0
        future: asyncio.Future[ScoreResult] = loop.create_future()
        self._queue.append((job, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            # requests to wait for (briefly) before this pass: the last pass's and those queued then, when it ended
            # moments ago (a request arriving at an idle server is scored at once)
            target = self._target if time.monotonic() - self._last_end < self.linger_s else 0
            # under load (requests waiting), the clients of the last pass usually send their next request within
            # a few milliseconds: waiting that long lets their requests share the coming pass instead of forming a
            # second cohort; a request that finds the queue empty is scored at once
            deadline = time.monotonic() + self.linger_s
            while len(self._queue) < target and time.monotonic() < deadline:
                await asyncio.sleep(self.linger_s / 10)
            take: list[tuple[ScoreJob, asyncio.Future[ScoreResult]]] = []
            rows = 0
            while self._queue and (not take or rows + len(self._queue[0][0].rows) <= self.max_rows):
                item = self._queue.pop(0)
                if item[1].done():  # the client went away
                    continue
                take.append(item)
                rows += len(item[0].rows)
            if not take:
                continue
            try:
                results = await asyncio.to_thread(self.data.score_many, [job for job, _ in take])
            except Exception as exc:  # not a per-request error: every request of the pass gets it
                for _, future in take:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.passes += 1
            self.scored += len(take)
            # lingering pays only when many clients keep requests in flight; at a moderate rate it only adds delay
            self._target = len(take) + len(self._queue) if len(take) >= self.linger_min else 0
            self._last_end = time.monotonic()
            for (_, future), result in zip(take, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, ScoreResult):
                    future.set_result(result)
                else:
                    future.set_exception(result)


# ------------------------------------------------------------------------------------------------ app

_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Required when the server was started with --api-key or SHOPSEG_API_KEY.",
)


# the dependencies are coroutines: FastAPI runs plain functions in a thread pool, which cost more than the check
async def _check_key(request: Request, key: Annotated[str | None, Security(_key_header)]) -> None:
    expected: str | None = request.app.state.api_key
    if expected is None:
        return
    if key is None:
        raise HTTPException(401, f"this server needs an API key: send it in the {API_KEY_HEADER} header")
    if not hmac.compare_digest(key.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(401, f"wrong API key in the {API_KEY_HEADER} header")


async def _data(request: Request) -> RunData:
    data: RunData = request.app.state.data
    return data


Data = Annotated[RunData, Depends(_data)]


def _version() -> str:
    try:
        return metadata.version("shopseg")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _build(
    data: RunData | None, *, api_key: str | None, max_body_bytes: int, close_on_shutdown: bool = True
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if data is not None and close_on_shutdown:
            data.close()

    app = FastAPI(
        title="shopseg scoring API",
        version=_version(),
        description="Segments, customers, recommendations and scoring of new customers over one shopseg run. "
        f"Errors: {{'error': {{'code', 'message', 'details'}}}}. Auth: the {API_KEY_HEADER} header when the "
        "server has a key.",
        lifespan=lifespan,
    )
    app.state.data = data
    app.state.api_key = api_key or None
    app.state.batcher = ScoreBatcher(data) if data is not None else None
    app.add_middleware(FastPaths, state=app.state)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # added last: outermost, so FastPaths sits inside
    _install_error_handlers(app)
    auth = [Depends(_check_key)]

    @app.get("/health", response_model=Health, tags=["service"])
    async def health(data: Data) -> dict[str, Any]:
        """Liveness and what is served; needs no API key."""
        return {
            "status": "ok",
            "run_id": data.run_id,
            "customers": data.n_customers,
            "segments": len(data.segment_ids),
            "version": app.version,
        }

    @app.get("/segments", response_model=SegmentList, dependencies=auth, responses=_ERRORS, tags=["segments"])
    async def segments(data: Data) -> dict[str, Any]:
        """Every segment: id, name, action, size, customer and revenue shares."""
        return {"run_id": data.run_id, "segments": data.segments()}

    @app.get(
        "/segments/{segment_id}",
        response_model=SegmentDetail,
        dependencies=auth,
        responses={**_ERRORS, **_NOT_FOUND},
        tags=["segments"],
    )
    async def segment(
        data: Data,
        segment_id: Annotated[int, PathParam(ge=0, le=1_000_000, description="Segment id, as in /segments.")],
        n: Annotated[int, Query(ge=1, le=100, description="Top products to list.")] = 10,
    ) -> dict[str, Any]:
        """A segment's profile (mean, median, z per feature), rules, action, top and banner products."""
        return data.segment(segment_id, n)

    @app.get(
        "/customers/{customer_id}",
        response_model=Customer,
        dependencies=auth,
        responses={**_ERRORS, **_NOT_FOUND},
        tags=["customers"],
    )
    async def customer(
        data: Data,
        customer_id: Annotated[str, PathParam(min_length=1, max_length=200, description="Customer id of the run.")],
        n: Annotated[int, Query(ge=1, le=100, description="Recommendations to return.")] = 10,
    ) -> Response:
        """A customer of the run: segment, name, action, feature values and top-n recommendations."""
        # the body is made once per customer from plain values already shaped like the model (no validation on
        # the hot path); most lookups never get here: FastPaths answers them with the same bytes
        return Response(data.customer_json(customer_id, n), media_type="application/json")

    @app.post(
        "/score",
        response_model=ScoreResponse,
        dependencies=auth,
        responses={**_ERRORS, 409: {"model": ErrorResponse, "description": "The lines lack what the model needs."}},
        tags=["customers"],
    )
    async def score(request: Request, data: Data, body: ScoreRequest) -> Response:
        """Segment customers the run has not seen from their raw order lines (ingest, clean and feature SQL of
        the library, then the run's saved model); recommendations are the segment's top products not yet bought.
        Concurrent requests are scored together in one pass (each gets exactly what it would get alone)."""
        batcher: ScoreBatcher = request.app.state.batcher
        job = ScoreJob(body.orders, customer_id=body.customer_id, as_of=body.as_of, n=body.n)
        result = await batcher.score(job)
        return Response(_score_body(data, result), media_type="application/json")

    @app.get(
        "/items/{product_id}/similar",
        response_model=SimilarItems,
        dependencies=auth,
        responses={**_ERRORS, **_NOT_FOUND},
        tags=["items"],
    )
    def similar(
        data: Data,
        product_id: Annotated[str, PathParam(min_length=1, max_length=200, description="Product id (code).")],
        n: Annotated[int, Query(ge=1, le=100, description="Items to return.")] = 10,
        by: Annotated[Literal["count", "lift"], Query(description="Rank by co-buyers or by lift.")] = "count",
        min_count: Annotated[int, Query(ge=1, le=1_000_000, description="Fewest co-buyers to list.")] = 1,
    ) -> dict[str, Any]:
        """Customers who bought this product also bought: co-buyers, confidence and lift, from the run's
        purchases (SQL on the run database, read-only)."""
        return data.similar_items(product_id, n, by=by, min_count=min_count)

    return app


def create_app(
    run_dir: str | Path | RunData,
    api_key: str | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The API over one run folder. The run is opened read-only and loaded now, so a bad folder fails here
    (with a :class:`~shopseg.errors.ShopsegError`), not on the first request. ``api_key`` (if given) is then
    required in the ``X-API-Key`` header of every route but ``/health`` and the docs. A :class:`RunData` may be
    passed instead of a folder; it is then left open when the app shuts down. Lookup bodies of runs up to
    :data:`~shopseg.serve.rundir.LOOKUP_PRECOMPUTE` customers are made now too (then a lookup is a dictionary
    access)."""
    if max_body_bytes < 1:
        raise ConfigError(f"max_body_bytes must be positive (got {max_body_bytes})")
    if isinstance(run_dir, RunData):
        run_dir.warm().precompute_lookups()
        return _build(run_dir, api_key=api_key, max_body_bytes=max_body_bytes, close_on_shutdown=False)
    data = RunData.open(run_dir)
    try:
        data.warm().precompute_lookups()
    except Exception:
        data.close()
        raise
    return _build(data, api_key=api_key, max_body_bytes=max_body_bytes)


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document (no run needed); ``docs/openapi.json`` is this, and a test keeps it current."""
    doc: dict[str, Any] = _build(None, api_key=None, max_body_bytes=DEFAULT_MAX_BODY_BYTES).openapi()
    return doc


# ------------------------------------------------------------------------------------------------ server

_ENV_RUN, _ENV_KEY, _ENV_BODY = "SHOPSEG_SERVE_RUN_DIR", "SHOPSEG_API_KEY", "SHOPSEG_SERVE_MAX_BODY_BYTES"


def app_from_env() -> FastAPI:
    """App factory for worker processes (``uvicorn --factory``): settings from the environment ``serve`` sets."""
    app = create_app(
        os.environ[_ENV_RUN],
        os.environ.get(_ENV_KEY) or None,
        max_body_bytes=int(os.environ.get(_ENV_BODY, DEFAULT_MAX_BODY_BYTES)),
    )
    _settle_heap()
    return app


def _settle_heap() -> None:
    """Once the run is loaded, move every object made so far out of the garbage collector's reach
    (``gc.freeze``): the server then never rescans the run's frames, arrays and lookup bodies in a full
    collection, which stalled a lone worker for 50-150 ms now and then under load (p99 of lookups 27-37 ms,
    max 130-170 ms, with one worker)."""
    import gc

    gc.collect()
    gc.freeze()


def default_workers() -> int:
    """Worker processes ``serve`` starts when not told: one per CPU core the process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def _uvicorn_impl() -> dict[str, str]:
    """uvicorn's C HTTP parser and event loop (httptools, uvloop: the ``serve`` extra) when installed."""
    have = importlib.util.find_spec
    return {
        "http": "httptools" if have("httptools") else "h11",
        "loop": "uvloop" if have("uvloop") else "asyncio",
    }


def serve(
    run_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    workers: int = 0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the API with uvicorn until interrupted. The run is checked before the server starts. ``workers``
    processes (0: :func:`default_workers`) each load the run and answer requests; each batches its own
    concurrent ``POST /score`` requests."""
    import uvicorn

    if workers < 0:
        raise ConfigError(f"workers must be 0 (one per CPU core) or more (got {workers})")
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535 (got {port})")
    workers = workers or default_workers()
    impl = _uvicorn_impl()
    if workers == 1:
        app = create_app(run_dir, api_key, max_body_bytes=max_body_bytes)
        _settle_heap()
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, **impl)  # type: ignore[arg-type]
        return
    RunData.open(run_dir).close()  # fail here, with the library's message, not in every worker
    os.environ[_ENV_RUN] = str(Path(run_dir).resolve())
    os.environ[_ENV_BODY] = str(max_body_bytes)
    if api_key:
        os.environ[_ENV_KEY] = api_key
    options: dict[str, Any] = {"log_level": log_level, "access_log": access_log, **impl}
    if sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT"):
        _serve_workers(_listen(host, port, workers), options)
        return
    # elsewhere SO_REUSEPORT does not spread connections (macOS gives them all to one socket): uvicorn's own
    # supervisor and shared socket
    extra: dict[str, Any] = dict(options)
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # a worker imports shopseg and loads the run before it answers the supervisor's first health check;
        # uvicorn's default of 5 s kills (and restarts, forever) workers on a busy machine
        extra["timeout_worker_healthcheck"] = 120
    uvicorn.run("shopseg.serve.api:app_from_env", factory=True, host=host, port=port, workers=workers, **extra)


def _listen(host: str, port: int, workers: int) -> list[socket.socket]:
    """One listening socket per worker on one address, with ``SO_REUSEPORT``: the kernel spreads new
    connections over them by a hash of the client's address and port. With uvicorn's one shared socket, the
    worker that wakes first accepts a whole burst of connections (100 keep-alive connections opened at once were
    split 77/23 and 76/24 between two workers, and the busier worker's latency was the server's); port 0 picks
    a free port, shared by all."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(workers):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from exc
            port = sock.getsockname()[1]
            sock.listen(2048)
            sock.set_inheritable(True)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _worker_main(sock: socket.socket, options: dict[str, Any]) -> None:
    """A worker process: uvicorn on its own listening socket, the app from the environment ``serve`` set."""
    import uvicorn

    config = uvicorn.Config("shopseg.serve.api:app_from_env", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _serve_workers(socks: list[socket.socket], options: dict[str, Any]) -> None:
    """Run one worker process per socket until SIGINT or SIGTERM, starting a new one in place of a worker that
    dies (and giving up when workers keep dying within seconds of starting)."""
    import multiprocessing
    import signal
    import threading

    import uvicorn

    uvicorn.Config("shopseg.serve.api:app_from_env", **options).configure_logging()
    logger = logging.getLogger("uvicorn.error")
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start(sock: socket.socket) -> Any:
        proc = ctx.Process(target=_worker_main, args=(sock, options), daemon=False)
        proc.start()
        return proc

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    host, port = socks[0].getsockname()[:2]
    logger.info("Started parent process [%d]; %d workers on http://%s:%d", os.getpid(), len(socks), host, port)
    procs = [start(sock) for sock in socks]
    started = [time.monotonic()] * len(procs)
    quick_deaths = 0
    try:
        while not stop.wait(0.5):
            for i, proc in enumerate(procs):
                if proc.is_alive():
                    continue
                logger.warning("worker process [%d] died (exit code %s)", proc.pid, proc.exitcode)
                quick_deaths = quick_deaths + 1 if time.monotonic() - started[i] < 30 else 0
                if quick_deaths >= 3:
                    raise ShopsegError("worker processes keep dying right after they start; see the log above")
                procs[i], started[i] = start(socks[i]), time.monotonic()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn finishes the requests under way and stops
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sock in socks:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logger.info("Stopped parent process [%d]", os.getpid())
