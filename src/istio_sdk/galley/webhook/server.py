"""The validating webhook's HTTPS server: :func:`review.answer_request` behind the admission
webhooks' HTTPS loop (:class:`istio_sdk._admission.AdmissionServer`: HTTP/1.1 with keep-alive,
bounded head and body, stalled peers dropped, decoding and validation in a worker thread,
never on the event loop).
"""

from __future__ import annotations

from istio_sdk._admission import REQUEST_TIMEOUT_SECONDS, AdmissionServer, WebhookAnswer
from istio_sdk._webhook_tls import WebhookCertificate
from istio_sdk.galley.webhook.review import answer_request

__all__ = ["ValidationWebhookServer"]


def _answer(method: str, path: str, content_type: str | None, body: bytes) -> WebhookAnswer:
    return answer_request(method=method, path=path, content_type=content_type, body=body)


class ValidationWebhookServer(AdmissionServer):
    """Galley's validating webhook over HTTPS (``/validate``, ``/admitpilot``, ``/admitmixer``).

    ``certificate`` is what the server presents (see :mod:`istio_sdk._webhook_tls`).
    ``requests`` counts answers by HTTP status, ``connections`` the connections accepted.
    """

    def __init__(
        self, certificate: WebhookCertificate, *, request_timeout: float = REQUEST_TIMEOUT_SECONDS
    ) -> None:
        super().__init__(
            _answer, certificate, name="validating webhook", request_timeout=request_timeout
        )
