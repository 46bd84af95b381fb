"""``snac-onnx serve --ray``: the same ASGI app as ``snac-onnx serve``, deployed on Ray Serve (FastAPI ingress).

Each replica is one process with its own model and :class:`~snac_onnx.stream.pool.StreamPool` (the app's
lifespan runs in the replica, so the model loads there); Serve's proxy spreads connections over the
replicas. The model must be readable at the same path on every node (a shared folder), or be a hub
name the nodes can fetch.

>>> from snac_onnx.serve import ServeSettings
>>> from snac_onnx.serve.ray import deployment
>>> from ray import serve
>>> serve.run(deployment(ServeSettings(model="/shared/models/snac_24khz", threads=2), replicas=4))

Needs the ``[ray-serve]`` extra.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import MissingDependencyError, install_hint
from .app import create_app
from .settings import ServeSettings

__all__ = ["deployment", "run_on_ray"]


def deployment(settings: ServeSettings, *, replicas: int = 1, name: str = "snac_onnx") -> Any:
    """A bound Ray Serve application of the server app: ``replicas`` replicas, each reserving ``settings.threads``
    CPUs (at least 1). Pass it to ``serve.run``."""
    try:
        from ray import serve
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError(f"Ray Serve is not installed: {install_hint('ray-serve')} ({exc})") from exc

    def build_app() -> Any:  # a function (not a partial): Serve calls it in each replica to build the ASGI app
        return create_app(settings)

    ingress = serve.ingress(build_app)()
    options = {"num_cpus": max(1, settings.threads)}
    return serve.deployment(name=name, num_replicas=replicas, ray_actor_options=options)(ingress).bind()


def run_on_ray(settings: ServeSettings) -> None:
    """Start (or join, with ``settings.address``) a Ray cluster, deploy the app (``settings.replicas`` replicas) on
    Serve's proxy at ``settings.host:port``, and keep it running until interrupted (then shut Serve down)."""
    try:
        import ray
        from ray import serve
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError(f"Ray Serve is not installed: {install_hint('ray-serve')} ({exc})") from exc
    ray.init(address=settings.address, include_dashboard=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(deployment(settings, replicas=settings.replicas), route_prefix="/", name="snac_onnx")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
