"""The injector's HTTPS server: :func:`webhook.answer_request` behind the admission webhooks'
HTTPS loop (:class:`istio_sdk._admission.AdmissionServer`: HTTP/1.1 with keep-alive, bounded
head and body, stalled peers dropped, decoding, injection and patch building in a worker
thread, never on the event loop).
"""

from __future__ import annotations

from collections.abc import Mapping

from istio_sdk._admission import REQUEST_TIMEOUT_SECONDS, AdmissionServer, WebhookAnswer
from istio_sdk._webhook_tls import WebhookCertificate
from istio_sdk.proxy.inject.settings import InjectSettings
from istio_sdk.proxy.inject.webhook import answer_request

__all__ = ["InjectorServer"]


class InjectorServer(AdmissionServer):
    """The mutating webhook over HTTPS, answering with ``settings``.

    ``certificate`` is what the server presents (see :mod:`istio_sdk._webhook_tls`).
    ``requests`` counts answers by HTTP status, ``connections`` the connections accepted.
    ``namespaces`` (namespace name -> labels; ``None``: the apiserver selects) makes the server
    apply Istio's webhook selectors itself.
    """

    def __init__(
        self,
        settings: InjectSettings,
        certificate: WebhookCertificate,
        *,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(
            self._answer_with_settings,
            certificate,
            name="sidecar injector",
            request_timeout=request_timeout,
        )
        self.settings = settings
        self.namespaces = namespaces

    def _answer_with_settings(
        self, method: str, path: str, content_type: str | None, body: bytes
    ) -> WebhookAnswer:
        return answer_request(
            method=method,
            path=path,
            content_type=content_type,
            body=body,
            settings=self.settings,
            namespaces=self.namespaces,
        )
