"""One worker-thread hop per JSON request: authentication, handler, serialisation and commit together.

A plain FastAPI route ``def f(..., user=Depends(get_current_user), db=Depends(get_db)) -> dict``
costs five or six hops between the event loop and the worker threads: entering the
``get_db`` generator, ``get_current_user``, the handler, the response validation, the
commit (:class:`~oaiofs.server.deps.CommitBeforeResponse`) and closing the session.
Each hop is a queue hand-off and two wake-ups; under load they were a quarter of the
server's CPU and stretched every request over several scheduling rounds (issue 13: p99 at 100
clients).

:class:`OneHopRoute` (``APIRouter(route_class=OneHopRoute)``) rewrites eligible endpoints,
synchronous ones whose only dependencies are ``get_db`` and ``get_current_user``, at
definition time: the session is made without a thread (:func:`request_session`: no
I/O), and one wrapper, in one worker thread, authenticates, calls the handler,
serialises the answer as FastAPI would (the route's response field), commits and closes.
Semantics stay those of :class:`~oaiofs.server.deps.CommitBeforeResponse`: success
commits before the answer exists (a failed commit answers 507/503/500, never 2xx),
an error or an answer >= 400 rolls back. Other endpoints are left as they are.
"""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

from fastapi import Request, Response, params
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from . import deps

log = logging.getLogger(__name__)
REQUEST_PARAM = "onehop_request_"


async def request_session(request: Request) -> Session:
    """The request's session, made in the event loop (no connection yet) and finished by the wrapper."""
    session = deps.get_state(request).sessionmaker()
    request.scope.setdefault(deps.SESSIONS_KEY, []).append(session)
    return session


def _finish(session: Session, commit: bool) -> None:
    """Commit (or roll back) and close ``session``; raise the JSON error of a failed commit."""
    error = deps.finish_sessions([session], commit)
    if error is not None:
        raise error


def _plan(endpoint: Callable[..., Any]) -> tuple[str | None, str | None] | None:
    """(db parameter, user parameter) of an eligible endpoint, else None."""
    if (inspect.iscoroutinefunction(endpoint) or inspect.isgeneratorfunction(endpoint)
            or inspect.isasyncgenfunction(endpoint)):
        return None
    db_param = user_param = None
    for name, param in inspect.signature(endpoint).parameters.items():
        if name == REQUEST_PARAM or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return None
        if param.annotation in (Response, "Response") or "BackgroundTasks" in str(param.annotation):
            return None
        if isinstance(param.default, params.Depends):
            if param.default.dependency is deps.get_db:
                db_param = name
            elif param.default.dependency is deps.get_current_user:
                user_param = name
            else:
                return None           # another dependency might open its own session: leave the route alone
    return (db_param, user_param) if db_param or user_param else None


class OneHopRoute(APIRoute):
    """An ``APIRoute`` whose eligible endpoint runs auth + handler + serialisation + commit in one thread."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        plan = _plan(endpoint)
        if plan is not None:
            endpoint = self._wrap(endpoint, *plan)
        super().__init__(path, endpoint, **kwargs)

    def _wrap(self, endpoint: Callable[..., Any], db_param: str | None, user_param: str | None) -> Callable[..., Any]:
        signature = inspect.signature(endpoint)
        session_param = db_param or "onehop_db_"
        new_params = [p.replace(default=params.Depends(request_session)) if p.name == db_param else p
                      for p in signature.parameters.values() if p.name != user_param]
        if db_param is None:
            new_params.append(inspect.Parameter(session_param, inspect.Parameter.KEYWORD_ONLY,
                                                default=params.Depends(request_session), annotation=Session))
        # FastAPI fills one Request parameter only: reuse the endpoint's own if it has one
        request_param = next((p.name for p in signature.parameters.values() if p.annotation in (Request, "Request")),
                             None)
        if request_param is None:
            new_params.append(inspect.Parameter(REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request))
        route = self

        @functools.wraps(endpoint)
        def one_hop(**kwargs: Any) -> Any:
            request: Request = kwargs[request_param] if request_param else kwargs.pop(REQUEST_PARAM)
            db: Session = kwargs[session_param] if db_param else kwargs.pop(session_param)
            try:
                if user_param is not None:
                    kwargs[user_param] = deps.get_current_user(request, db)
                result = endpoint(**kwargs)
                answer = result if isinstance(result, Response) else route._serialise(result)
            except BaseException:
                _finish(db, commit=False)
                raise
            if answer is None:                       # leave the odd case to FastAPI (it raises the error)
                _finish(db, commit=False)
                return result
            _finish(db, commit=answer.status_code < 400)
            return answer

        # FastAPI reads this signature (``__signature__`` wins over ``__wrapped__``) and resolves string
        # annotations in the globals of the unwrapped endpoint
        one_hop.__signature__ = signature.replace(parameters=new_params)   # type: ignore[attr-defined]
        return one_hop

    def _serialise(self, result: Any) -> Response | None:
        """``result`` as FastAPI would answer it (the route's response field), or None if it would not validate."""
        status = self.status_code or 200
        field = self.response_field
        if field is None:
            return JSONResponse(jsonable_encoder(result), status_code=status)
        value, errors = field.validate(result, {}, loc=("response",))
        if errors:
            return None
        return Response(field.serialize_json(value, by_alias=True), status_code=status, media_type="application/json")
