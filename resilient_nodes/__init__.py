"""Resilient LangGraph-style workflow nodes.

Compose retries, a circuit breaker and timeouts as one `Policy` and wrap node
functions with `create_node`. Everything public is importable from here.
"""

from __future__ import annotations

from .classification import ClassificationRule as ClassificationRule
from .classification import ErrorCategory as ErrorCategory
from .classification import ErrorClassification as ErrorClassification
from .classification import classify_error as classify_error
from .classification import get_error_category as get_error_category
from .classification import is_retryable_node_error as is_retryable_node_error
from .classification import register_classification_rule as register_classification_rule
from .classification import unregister_classification_rule as unregister_classification_rule
from .config import LLM_RETRY as LLM_RETRY
from .config import TOOL_RETRY as TOOL_RETRY
from .config import VALIDATION_RETRY as VALIDATION_RETRY
from .config import BreakerConfig as BreakerConfig
from .config import RetryConfig as RetryConfig
from .config import TimeoutConfig as TimeoutConfig
from .context import ExecutionContext as ExecutionContext
from .context import create_execution_context as create_execution_context
from .context import current_context as current_context
from .context import generate_graph_execution_id as generate_graph_execution_id
from .context import generate_trace_id as generate_trace_id
from .errors import MESSAGE_TEMPLATES as MESSAGE_TEMPLATES
from .errors import ConfigError as ConfigError
from .errors import ErrorCode as ErrorCode
from .errors import NodeCancellationError as NodeCancellationError
from .errors import NodeCircuitOpenError as NodeCircuitOpenError
from .errors import NodeExecutionError as NodeExecutionError
from .errors import NodeRetryExhaustedError as NodeRetryExhaustedError
from .errors import NodeTimeoutError as NodeTimeoutError
from .errors import NodeValidationError as NodeValidationError
from .sanitize import normalize_error as normalize_error
from .sanitize import redact_secrets as redact_secrets
from .sanitize import sanitize_traceback as sanitize_traceback

__all__ = [
    "LLM_RETRY",
    "MESSAGE_TEMPLATES",
    "TOOL_RETRY",
    "VALIDATION_RETRY",
    "BreakerConfig",
    "ClassificationRule",
    "ConfigError",
    "ErrorCategory",
    "ErrorClassification",
    "ErrorCode",
    "ExecutionContext",
    "NodeCancellationError",
    "NodeCircuitOpenError",
    "NodeExecutionError",
    "NodeRetryExhaustedError",
    "NodeTimeoutError",
    "NodeValidationError",
    "RetryConfig",
    "TimeoutConfig",
    "classify_error",
    "create_execution_context",
    "current_context",
    "generate_graph_execution_id",
    "generate_trace_id",
    "get_error_category",
    "is_retryable_node_error",
    "normalize_error",
    "redact_secrets",
    "register_classification_rule",
    "sanitize_traceback",
    "unregister_classification_rule",
]
