"""uvicorn's logging config for ``oaiofs serve`` (access log on request, text or JSON)."""
from __future__ import annotations

import copy
from typing import Any


def uvicorn_log_config(level: str, access_log: bool, fmt: str = "text") -> dict[str, Any]:
    """uvicorn's default config with the access logger at INFO when ``access_log``, JSON lines if asked."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["uvicorn"]["level"] = level.upper()
    config["loggers"]["uvicorn.error"]["level"] = level.upper()   # uvicorn.run gets log_level=None: these rule
    config["loggers"]["uvicorn.access"]["level"] = "INFO" if access_log else "WARNING"
    if fmt == "json":
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = "oaiofs.logsetup.JsonFormatter"
    return config
