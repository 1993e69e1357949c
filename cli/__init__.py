"""The ``lossd`` command: serve, losses, health (from lossd.server) and bench (from lossd.bench)."""

from lossd.cli.main import main

__all__ = ["main"]
