"""The Mixer client: Check with Istio 1.3's proxy caches, quota prefetch, batched Report.

:class:`MixerClient` is the grpclib client; the pure cores it is built on are public modules
here too: :mod:`.referenced` (the cache key), :mod:`.check_cache`, :mod:`.prefetch` and
:mod:`.quota_cache`, :mod:`.report_batch`.
"""

from __future__ import annotations

from istio_sdk.mixer.client._client import (
    CheckResult,
    MixerClient,
    MixerClientOptions,
    MixerClientStats,
    retry_delay,
)

__all__ = ["CheckResult", "MixerClient", "MixerClientOptions", "MixerClientStats", "retry_delay"]
