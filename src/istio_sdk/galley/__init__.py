"""Galley: configuration analysis (``istio_sdk.galley.analysis``, istioctl analyze)."""

from istio_sdk.galley.analysis import AnalysisResult, analyze

__all__ = ["AnalysisResult", "analyze"]
