"""evorec: learns how users' interests evolve and serves recommendations over gRPC."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("evorec")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
