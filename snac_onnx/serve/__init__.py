"""``snac-onnx serve``: the HTTP and WebSocket server (FastAPI on uvicorn) in front of a stream pool, and its Ray
Serve deployment. Needs the ``[serve]`` extra.

* :mod:`~snac_onnx.serve.settings`: what it runs (pydantic-settings; the CLI's flags and ``SNAC_ONNX_*``);
* :mod:`~snac_onnx.serve.protocol`: the client's messages, the query, close codes, audio formats;
* :mod:`~snac_onnx.serve.service`: what the routers share (codec, pool, metrics, admission, draining);
* :mod:`~snac_onnx.serve.ws`, :mod:`~snac_onnx.serve.http`, :mod:`~snac_onnx.serve.status`: the routers;
* :mod:`~snac_onnx.serve.metrics`: the Prometheus metrics;
* :mod:`~snac_onnx.serve.connection`: dropping a connection whose client does not read;
* :mod:`~snac_onnx.serve.app`: the app factory; :mod:`~snac_onnx.serve.run`: uvicorn; :mod:`~snac_onnx.serve.ray`:
  Ray Serve.
"""

from __future__ import annotations

from ..errors import MissingDependencyError, install_hint

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import pydantic_settings  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError(
        f"snac-onnx serve needs FastAPI, uvicorn, pydantic-settings and prometheus-client ({exc.name} is missing): "
        f"{install_hint('serve')}"
    ) from exc

from .app import create_app
from .run import serve
from .settings import ServeSettings, load_settings

__all__ = ["ServeSettings", "load_settings", "create_app", "serve"]
