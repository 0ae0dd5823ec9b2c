"""DigitalMe: the API service and its production-monitoring layer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("digitalme")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
