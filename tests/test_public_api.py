"""The public surface and the package's shape.

`resilient_nodes` re-exports a surface chosen by hand; implementation lives in
private modules that never reach into each other's private names, and no two
modules import each other, directly or around a loop.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import resilient_nodes

if TYPE_CHECKING:
    from types import ModuleType

PACKAGE = Path(resilient_nodes.__file__).parent

# The deliberate surface: DESIGN.md's contract and the seed's named functions.
# Adding a name here is an API decision, not a side effect of writing a module.
EXPECTED_ROOT = {
    # policies and nodes
    "Policy",
    "load_node_policies",
    "create_node",
    "create_simple_node",
    "create_llm_node",
    "create_tool_node",
    "AsyncNode",
    "SyncNode",
    # errors
    "NodeExecutionError",
    "ErrorCode",
    "NodeTimeoutError",
    "NodeCancellationError",
    "NodeCircuitOpenError",
    "NodeRetryExhaustedError",
    "NodeValidationError",
    "StateValidationError",
    "ConfigError",
    "AbandonedThreadLimitError",
    "ChaosHangError",
    # strategies for LLM calls
    "NodeFallbackExhaustedError",
    "NodeStreamInterruptedError",
    # classification
    "classify_error",
    "is_retryable_node_error",
    "get_error_category",
    "register_classification_rule",
    "unregister_classification_rule",
    "ClassificationRule",
    "ErrorCategory",
    "ErrorClassification",
    # records and sanitising
    "sanitize_traceback",
    "normalize_error",
    "NodeErrorRecord",
    "create_node_error",
    "create_error_update",
    # breaker
    "NodeCircuitBreaker",
    "BreakerState",
    "BreakerStatus",
    # retry (the seed's withRetry / createRetryWrapper and its presets)
    "with_retry",
    "create_retry_wrapper",
    "RetryConfig",
    "LLM_RETRY",
    "TOOL_RETRY",
    "VALIDATION_RETRY",
    # timeout and cancellation
    "with_timeout",
    "with_timeout_result",
    "create_timeout_controller",
    "TimeoutController",
    "TimeoutResult",
    "CancelToken",
    # context
    "ExecutionContext",
    "current_context",
    "create_execution_context",
    "generate_trace_id",
    "generate_graph_execution_id",
    # state
    "GraphState",
    "EvidenceRef",
    "GateDecision",
    "update_state",
    "update_artifact_paths",
    "update_routing_flags",
    "add_evidence_refs",
    "update_gate_decisions",
    "add_errors",
    "create_blocked_update",
    "merge_state_updates",
    # logging (create_node_logger is the seed's createNodeLogger / ...WithContext)
    "LOGGER_NAME",
    "LogEvent",
    "NodeLogger",
    "create_node_logger",
    # load control
    "NodeBulkheadFullError",
    "NodeRateLimitedError",
    "RetryBudget",
    # traces and metrics
    "enable_opentelemetry",
    "enable_prometheus",
    "disable_telemetry",
}

# Importable from the root, but only on first use: they need an optional extra.
OPTIONAL_ROOT = {"RedisBreakerStorage": "redis"}

PUBLIC_MODULES = ("errors", "testing")


def _isort_key(name: str) -> tuple[int, list[int | str]]:
    """ruff RUF022's isort-style order: CONSTANTS, then Classes, then functions, naturally."""
    if name.isupper() or (name.upper() == name and "_" in name):
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def _modules() -> dict[str, ast.Module]:
    """Every module of the package by dotted name under it (``_retry``, ``demo.graph``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        modules[".".join(parts)] = ast.parse(path.read_text())
    return modules


def _package_of(name: str) -> str:
    """The package a module's relative imports start from ('' for the root's modules)."""
    return name.rpartition(".")[0] if "." in name else ""


def _relative_target(name: str, node: ast.ImportFrom) -> str:
    """The dotted module a relative ``from`` import names, under the package."""
    base = _package_of(name).split(".") if _package_of(name) else []
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def test_root_is_the_chosen_surface() -> None:
    """`__all__` is exactly the surface chosen above: nothing leaks in by accident."""
    assert set(resilient_nodes.__all__) == EXPECTED_ROOT


@pytest.mark.parametrize("module_name", ["", *PUBLIC_MODULES])
def test_all_is_sorted_without_duplicates(module_name: str) -> None:
    """Each public namespace lists constants, then classes, then functions, sorted."""
    module = importlib.import_module(f"resilient_nodes{'.' if module_name else ''}{module_name}")
    names = list(module.__all__)
    assert names == sorted(names, key=_isort_key)
    assert len(names) == len(set(names))


def test_every_root_name_is_the_object_its_module_defines() -> None:
    """Re-exports are the same objects, and none of them is private."""
    for name in resilient_nodes.__all__:
        assert not name.startswith("_"), name
        value = getattr(resilient_nodes, name)
        home = getattr(value, "__module__", None)
        if isinstance(home, str) and home.startswith("resilient_nodes."):
            assert getattr(sys.modules[home], name) is value, name


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_module_all_is_complete(module_name: str) -> None:
    """Every public class and function defined in a public module is in its `__all__`."""
    module: ModuleType = importlib.import_module(f"resilient_nodes.{module_name}")
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    }
    assert defined <= set(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name


def test_every_exception_is_in_errors_and_at_the_root() -> None:
    """Every exception the package defines lives in `resilient_nodes.errors`, under the root."""
    from resilient_nodes import errors

    for name in errors.__all__:
        value = getattr(errors, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, errors.NodeExecutionError), name
            assert getattr(resilient_nodes, name) is value, name
    for name, tree in _modules().items():
        if name.startswith("demo"):  # the demo simulates services, whose errors are its own
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(base) for base in node.bases}
                public = not node.name.startswith("_")
                assert not (public and bases & {"Exception", "BaseException"}) or (
                    node.name == "NodeExecutionError"
                ), node.name


def test_star_import_matches_all() -> None:
    """`from resilient_nodes import *` yields exactly the names in `__all__`."""
    namespace: dict[str, object] = {}
    exec("from resilient_nodes import *", namespace)  # noqa: S102 - the behaviour under test
    namespace.pop("__builtins__")
    assert set(namespace) == set(resilient_nodes.__all__)


def test_optional_names_resolve_lazily() -> None:
    """A name that needs an extra is an attribute of the root, outside `__all__`."""
    from resilient_nodes._redis_storage import RedisBreakerStorage

    for name in OPTIONAL_ROOT:
        assert name not in resilient_nodes.__all__
    assert resilient_nodes.RedisBreakerStorage is RedisBreakerStorage


def test_a_missing_extra_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the extra, the error names the extra and how to install it."""
    monkeypatch.delitem(vars(resilient_nodes), "RedisBreakerStorage", raising=False)
    monkeypatch.delitem(sys.modules, "resilient_nodes._redis_storage", raising=False)
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
    with pytest.raises(ModuleNotFoundError, match=r"needs the 'redis' extra: pip install"):
        resilient_nodes.RedisBreakerStorage  # noqa: B018 - the lookup is the test


def test_unknown_attribute_is_an_attribute_error() -> None:
    """The lazy loader does not swallow typos."""
    with pytest.raises(AttributeError, match="no attribute 'Polcy'"):
        resilient_nodes.Polcy  # noqa: B018 - the lookup is the test


def test_no_module_imports_another_modules_private_names() -> None:
    """Privacy is by module: `from ._x import _name` appears nowhere in the package."""
    reaches = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 1 and node.module:
                reaches.extend(
                    f"{name} takes {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                )
    assert reaches == []


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                target = _relative_target(name, node)
            elif node.module and node.module.startswith("resilient_nodes"):
                target = node.module.removeprefix("resilient_nodes").lstrip(".")
            else:
                continue
            for alias in node.names:
                dep = f"{target}.{alias.name}" if target else alias.name
                if dep not in modules:
                    dep = target
                if dep in modules and dep != name:
                    graph[name].add(dep)
    return graph


def test_no_import_cycle() -> None:
    """No module imports itself around a loop (the package's modules form a DAG)."""
    graph = _import_graph()
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        path.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_cycle_finder_finds_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cycle test can fail: a made-up back edge is reported."""
    graph = _import_graph()
    assert "_tokens" in graph["_cancel"]
    graph["_tokens"].add("_cancel")  # _cancel imports _tokens: now a loop
    monkeypatch.setattr(sys.modules[__name__], "_import_graph", lambda: graph)
    with pytest.raises(pytest.fail.Exception, match=r"import cycle: .*_cancel"):
        test_no_import_cycle()


def test_adapters_alone_import_their_library() -> None:
    """tenacity only in the retry adapter, pybreaker only in the breaker adapter."""
    owners = {
        "tenacity": {"_retry"},
        "pybreaker": {"_breaker"},
        # The rate limit's shared window is limits' Redis storage, whose client
        # it configures (timeouts, no retries): the second redis adapter.
        "redis": {"_redis_storage", "_ratelimit"},
        "limits": {"_ratelimit"},
    }
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            for library, allowed in owners.items():
                assert library not in roots or name in allowed, f"{name} imports {library}"


def test_version_is_the_installed_distributions() -> None:
    """`__version__` is read from the metadata on first use; it is not part of `__all__`."""
    from importlib.metadata import version

    assert resilient_nodes.__version__ == version("resilient-nodes")
    assert "__version__" not in resilient_nodes.__all__


def test_version_without_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """A source tree that was never installed reports a valid placeholder version."""
    import importlib.metadata

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    monkeypatch.delitem(vars(resilient_nodes), "__version__", raising=False)
    assert resilient_nodes.__version__ == "0+unknown"
    monkeypatch.delitem(vars(resilient_nodes), "__version__")  # not cached for later tests
