"""Galley's validating admission webhook: Istio's verdicts on config the kube-apiserver admits.

- :func:`review`: an AdmissionReview (``admission.k8s.io/v1`` or ``v1beta1``) in, the answer
  out, at istiod's ``/validate`` or Galley 1.3's ``/admitpilot`` and ``/admitmixer``;
- :func:`answer_request`: the same for one HTTP request (status codes included);
- :class:`ValidationWebhookServer`: over HTTPS (``istio-sdk serve --webhook-port``).

See ``docs/galley.md``.
"""

from __future__ import annotations

from istio_sdk.galley.webhook.review import PATHS, answer_request, review
from istio_sdk.galley.webhook.server import ValidationWebhookServer

__all__ = ["PATHS", "ValidationWebhookServer", "answer_request", "review"]
