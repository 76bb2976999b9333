"""Report batching: attribute bags gathered into the ReportRequests Istio 1.3's proxy sends.

As src/istio/mixerclient/report_batch.cc: a batch is sent when it holds ``max_entries`` bags
(100) or ``max_time`` seconds (1 s) after its *first* bag arrived, whichever comes first. The
request is what 1.3's proxy sends (:func:`istio_sdk.mixer.wire.encode_report`):
INDEPENDENT_ENCODING, one word list shared by the batch in ``default_words``, each set's own
``words`` empty, and the client's ``global_word_count``. No I/O and no clock of its own: the
caller passes the time and schedules the flush at :attr:`ReportBatch.deadline`.
"""

from __future__ import annotations

from collections.abc import Mapping

from istio_sdk.api.istio.mixer.v1 import ReportRequest
from istio_sdk.mixer.attributes import AttributeBag
from istio_sdk.mixer.wire import ReportEncoding, encode_report

__all__ = ["ReportBatch"]

DEFAULT_MAX_ENTRIES = 100
DEFAULT_MAX_TIME = 1.0


class ReportBatch:
    """The bags waiting to be reported; see the module docstring."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_time: float = DEFAULT_MAX_TIME
    ) -> None:
        if max_entries < 1 or not max_time > 0:
            raise ValueError("max_entries must be >= 1 and max_time > 0")
        self.max_entries = max_entries
        self.max_time = max_time
        self._bags: list[AttributeBag] = []
        self._deadline: float | None = None

    def __len__(self) -> int:
        return len(self._bags)

    @property
    def deadline(self) -> float | None:
        """When the batch is due (``max_time`` after its first bag), None when empty."""
        return self._deadline

    def add(self, bag: Mapping[str, object], now: float) -> bool:
        """Add one bag (checked: :class:`~istio_sdk.mixer.AttributesError` if it holds a bad
        value); True when the batch is now full and should be taken."""
        checked = bag if isinstance(bag, AttributeBag) else AttributeBag(bag)
        if not self._bags:
            self._deadline = now + self.max_time
        self._bags.append(checked)
        return len(self._bags) >= self.max_entries

    def take(self, global_word_count: int) -> ReportRequest | None:
        """The batch as one ReportRequest (None when empty); the batch starts over."""
        if not self._bags:
            return None
        bags, self._bags, self._deadline = self._bags, [], None
        [request] = encode_report(
            bags, encoding=ReportEncoding.INDEPENDENT, global_word_count=global_word_count
        )
        return request
