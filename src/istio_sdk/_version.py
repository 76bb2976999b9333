"""The installed version of istio-sdk."""

__version__ = "0.1.0"
