"""lossd's gRPC server: the LossService, health and reflection, metrics, settings and the CLI.

Run it with ``lossd serve`` (or ``python -m lossd.server``); embed it with :class:`LossServer`
(asyncio) or :class:`BackgroundServer` (a thread of its own).
"""

from lossd.server.app import BackgroundServer, LossServer, serve
from lossd.server.settings import ServerSettings

__all__ = ["BackgroundServer", "LossServer", "ServerSettings", "serve"]
