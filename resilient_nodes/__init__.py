"""Resilient LangGraph-style workflow nodes.

Compose retries, a circuit breaker and timeouts as one `Policy` and wrap node
functions with `create_node`::

    from resilient_nodes import Policy, create_node

    plan = create_node(plan_impl, name="plan",
                       policy=Policy.llm() | Policy.breaker() | Policy.timeout(30))

This module is the public surface, chosen by hand: everything a user needs is
importable from here, the implementation lives in private modules, and helpers
for users' own tests live in `resilient_nodes.testing`. Every exception is also
in `resilient_nodes.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._breaker import BreakerState as BreakerState
from ._breaker import BreakerStatus as BreakerStatus
from ._breaker import NodeCircuitBreaker as NodeCircuitBreaker
from ._classification import ClassificationRule as ClassificationRule
from ._classification import ErrorCategory as ErrorCategory
from ._classification import ErrorClassification as ErrorClassification
from ._classification import classify_error as classify_error
from ._classification import get_error_category as get_error_category
from ._classification import is_retryable_node_error as is_retryable_node_error
from ._classification import register_classification_rule as register_classification_rule
from ._classification import unregister_classification_rule as unregister_classification_rule
from ._config import LLM_RETRY as LLM_RETRY
from ._config import TOOL_RETRY as TOOL_RETRY
from ._config import VALIDATION_RETRY as VALIDATION_RETRY
from ._config import RetryBudget as RetryBudget
from ._config import RetryConfig as RetryConfig
from ._context import ExecutionContext as ExecutionContext
from ._context import create_execution_context as create_execution_context
from ._context import current_context as current_context
from ._context import generate_graph_execution_id as generate_graph_execution_id
from ._context import generate_trace_id as generate_trace_id
from ._logging import LOGGER_NAME as LOGGER_NAME
from ._logging import LogEvent as LogEvent
from ._node import AsyncNode as AsyncNode
from ._node import SyncNode as SyncNode
from ._node import create_llm_node as create_llm_node
from ._node import create_node as create_node
from ._node import create_simple_node as create_simple_node
from ._node import create_tool_node as create_tool_node
from ._node_logger import NodeLogger as NodeLogger
from ._node_logger import create_node_logger as create_node_logger
from ._policy import Policy as Policy
from ._policy import load_node_policies as load_node_policies
from ._records import NodeErrorRecord as NodeErrorRecord
from ._records import create_error_update as create_error_update
from ._records import create_node_error as create_node_error
from ._retry import create_retry_wrapper as create_retry_wrapper
from ._retry import with_retry as with_retry
from ._sanitize import normalize_error as normalize_error
from ._sanitize import sanitize_traceback as sanitize_traceback
from ._state import EvidenceRef as EvidenceRef
from ._state import GateDecision as GateDecision
from ._state import GraphState as GraphState
from ._state import add_errors as add_errors
from ._state import add_evidence_refs as add_evidence_refs
from ._state import create_blocked_update as create_blocked_update
from ._state import merge_state_updates as merge_state_updates
from ._state import update_artifact_paths as update_artifact_paths
from ._state import update_gate_decisions as update_gate_decisions
from ._state import update_routing_flags as update_routing_flags
from ._state import update_state as update_state
from ._timeout import TimeoutController as TimeoutController
from ._timeout import TimeoutResult as TimeoutResult
from ._timeout import create_timeout_controller as create_timeout_controller
from ._timeout import with_timeout as with_timeout
from ._timeout import with_timeout_result as with_timeout_result
from ._tokens import CancelToken as CancelToken
from .errors import AbandonedThreadLimitError as AbandonedThreadLimitError
from .errors import ChaosHangError as ChaosHangError
from .errors import ConfigError as ConfigError
from .errors import ErrorCode as ErrorCode
from .errors import NodeBulkheadFullError as NodeBulkheadFullError
from .errors import NodeCancellationError as NodeCancellationError
from .errors import NodeCircuitOpenError as NodeCircuitOpenError
from .errors import NodeExecutionError as NodeExecutionError
from .errors import NodeFallbackExhaustedError as NodeFallbackExhaustedError
from .errors import NodeRateLimitedError as NodeRateLimitedError
from .errors import NodeRetryExhaustedError as NodeRetryExhaustedError
from .errors import NodeStreamInterruptedError as NodeStreamInterruptedError
from .errors import NodeTimeoutError as NodeTimeoutError
from .errors import NodeValidationError as NodeValidationError
from .errors import StateValidationError as StateValidationError

if TYPE_CHECKING:
    from ._redis_storage import RedisBreakerStorage as RedisBreakerStorage

# Names whose module needs an optional extra: imported on first use, and left out
# of __all__ so that a star import never needs the extra.
_OPTIONAL = {"RedisBreakerStorage": ("._redis_storage", "redis")}


def __getattr__(name: str) -> Any:
    """Import names that need an optional extra, and ``__version__``, on first use."""
    if name == "__version__":
        value: Any = _version()
        globals()[name] = value
        return value
    entry = _OPTIONAL.get(name)
    if entry is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415 - only when the name is asked for

    module, extra = entry
    try:
        value = getattr(importlib.import_module(module, __name__), name)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{name} needs the {extra!r} extra: pip install 'resilient-nodes[{extra}]' ({error})",
            name=error.name,
        ) from error
    globals()[name] = value
    return value


def _version() -> str:
    # Read from the installed metadata on first use, as structlog and attrs do:
    # importlib.metadata costs milliseconds that `import resilient_nodes` need not pay.
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("resilient-nodes")
    except PackageNotFoundError:
        # Imported from a source tree that was never installed: no metadata to read.
        return "0+unknown"


__all__ = [
    "LLM_RETRY",
    "LOGGER_NAME",
    "TOOL_RETRY",
    "VALIDATION_RETRY",
    "AbandonedThreadLimitError",
    "AsyncNode",
    "BreakerState",
    "BreakerStatus",
    "CancelToken",
    "ChaosHangError",
    "ClassificationRule",
    "ConfigError",
    "ErrorCategory",
    "ErrorClassification",
    "ErrorCode",
    "EvidenceRef",
    "ExecutionContext",
    "GateDecision",
    "GraphState",
    "LogEvent",
    "NodeBulkheadFullError",
    "NodeCancellationError",
    "NodeCircuitBreaker",
    "NodeCircuitOpenError",
    "NodeErrorRecord",
    "NodeExecutionError",
    "NodeFallbackExhaustedError",
    "NodeLogger",
    "NodeRateLimitedError",
    "NodeRetryExhaustedError",
    "NodeStreamInterruptedError",
    "NodeTimeoutError",
    "NodeValidationError",
    "Policy",
    "RetryBudget",
    "RetryConfig",
    "StateValidationError",
    "SyncNode",
    "TimeoutController",
    "TimeoutResult",
    "add_errors",
    "add_evidence_refs",
    "classify_error",
    "create_blocked_update",
    "create_error_update",
    "create_execution_context",
    "create_llm_node",
    "create_node",
    "create_node_error",
    "create_node_logger",
    "create_retry_wrapper",
    "create_simple_node",
    "create_timeout_controller",
    "create_tool_node",
    "current_context",
    "generate_graph_execution_id",
    "generate_trace_id",
    "get_error_category",
    "is_retryable_node_error",
    "load_node_policies",
    "merge_state_updates",
    "normalize_error",
    "register_classification_rule",
    "sanitize_traceback",
    "unregister_classification_rule",
    "update_artifact_paths",
    "update_gate_decisions",
    "update_routing_flags",
    "update_state",
    "with_retry",
    "with_timeout",
    "with_timeout_result",
]
