"""istio-iptables: the rules that send a Pod's traffic through its sidecar.

:class:`CaptureConfig` says what to capture (Istio's flags and defaults), :func:`build_rules`
turns it into Istio's rules as ``iptables-restore`` input, :func:`apply_rules` and
:func:`cleanup_rules` install and remove them atomically, and :func:`config_from_options`
reads istio-iptables' flags and environment variables. See docs/iptables.md.
"""

from istio_sdk.proxy.iptables._apply import apply_rules, cleanup_rules, iptables_state
from istio_sdk.proxy.iptables._config import (
    ALL,
    CaptureConfig,
    InterceptionMode,
    IptablesConfigError,
    IptablesError,
)
from istio_sdk.proxy.iptables._options import OPTIONS, Option, RunSettings, config_from_options
from istio_sdk.proxy.iptables._rules import Rule, RuleSet, build_rules

__all__ = [
    "ALL",
    "OPTIONS",
    "CaptureConfig",
    "InterceptionMode",
    "IptablesConfigError",
    "IptablesError",
    "Option",
    "Rule",
    "RuleSet",
    "RunSettings",
    "apply_rules",
    "build_rules",
    "cleanup_rules",
    "config_from_options",
    "iptables_state",
]
