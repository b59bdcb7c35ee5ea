"""Runs our Lambda handlers in-process behind moto's Lambda service, the way Lambda runs them:
one invocation at a time per execution environment, each with its function's configuration.

moto needs Docker to run function code; there is no Docker here. moto_patches routes moto's
`LambdaFunction._invoke_lambda` to `InProcessLambdaRuntime.invoke`, so whatever invokes a
function through moto reaches our real handlers, named by the function's own `Handler`
setting: Step Functions tasks, S3 and SNS notifications, direct `lambda:Invoke`. The local API
gateway calls `InProcessLambdaRuntime.call` (API Gateway invokes the function the same way).

Execution environments
----------------------
Lambda runs one invocation at a time in an execution environment and scales out by creating
another one when all are busy. Here each function has a pool of environments: an invocation
takes an idle environment of the function's current configuration, or makes a new one (a cold
start) when all are busy. One lock per function would not do: a handler can cause another
invocation of the same function while it runs (the s3-edit function writes
`edits/x.error.json` into the uploads bucket; moto's server thread then invokes s3-edit for
that object while the first invocation waits for its PutObject answer), and would wait for
itself forever. A pool skips the busy environment and makes another, as Lambda does.

A change of configuration (UpdateFunctionConfiguration: environment, handler, memory, timeout,
runtime) retires the function's environments, as a Lambda deployment does: invocations that
start afterwards run in new ones. Up to MAX_IDLE_ENVIRONMENTS idle ones per function are kept
warm. Measured: a cold start of the API function loads 119 modules in about 60 ms on an idle
core, and an environment holds about 2 MB; cold starts run one at a time (see _LOADING).
Retired environments are freed, except the few that typing's bounded caches still reference.

What an environment isolates (tests/local/test_lambda_runtime.py and test_api_concurrency.py
measure each point; before environments, 8 concurrent invocations of one function ran up to 8
at once in one module copy, and 52 of 100 alternating submissions from two keys stored the
other request's prompt; now 1 and 0):
- its own copy of the handler's package (`api`, `workflow` or `s3_edit`) and of
  `aws_lambda_powertools`, loaded by a private importer (`PrivateModules`). Module-level state
  of those belongs to one environment and so to one invocation at a time: the resolver and the
  current event and Lambda context Powertools keeps on its `BaseRouter` class (shared by every
  resolver of a process: the cause of #9.1, requests reading each other's body), the metrics
  Powertools' `Metrics` collects until the invocation flushes them, the cold-start flags, the
  handler modules' own caches. Import statements those modules run later (Powertools imports
  lazily inside functions) resolve to the same private copy; `importlib.import_module` calls
  (a few of Powertools' lazy loaders, none on our handlers' paths) get the shared copy.
- its configuration: each invocation runs with its function's `Environment.Variables` as
  moto holds them when it starts, handed over in `imagegen.settings.FUNCTION_ENVIRONMENT`;
  `current_settings()` and `services()` are cached per distinct environment. No invocation
  reads, or can put back, another function's or an older configuration.

What it does not isolate (one process runs everything):
- the domain package `imagegen` is loaded once and shared: its module-level state is, and the
  Services built for one configuration (boto3 clients, which are thread-safe) are shared by
  the environments of every function with that configuration. Tests rely on it to patch the
  workflow in-process (tests/workflow/test_no_duplicate_tasks.py).
- the process: os.environ, stdlib modules (logging included), other third-party libraries,
  /tmp. Powertools' Logger keeps its keys (function_request_id...) on the formatter of the
  stdlib logger named after the service, one per process, so a log line of one invocation can
  carry a concurrent invocation's keys. Powertools' parameters cache is imagegen's, shared.
- limits: the function's timeout and memory are reported in the context, not enforced.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import importlib.util
import itertools
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from imagegen.settings import FUNCTION_ENVIRONMENT

log = logging.getLogger("imagegen.local.lambda")

Handler = Callable[[Any, Any], Any]

# Loaded once per execution environment, besides the handler's own package.
PER_ENVIRONMENT_PACKAGES = ("aws_lambda_powertools",)
MAX_IDLE_ENVIRONMENTS = 8  # per function; Lambda, too, reclaims environments left idle


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda context object that Powertools and our code read."""

    function_name: str
    memory_limit_in_mb: int = 256
    timeout_seconds: int = 30
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


# One loader at a time, process-wide. Importing the ordinary copies of a package's submodules
# from several threads at once, in different orders, makes the import system see a circular
# import where there is none and hand out a partially initialised module (ImportError "cannot
# import name ... from partially initialized module"): cold starts load one after the other.
_LOADING = threading.RLock()


class PrivateModules:
    """A private copy of some top-level packages, loaded beside (not into) sys.modules.

    Every module loaded here gets builtins whose `__import__` resolves those packages to this
    copy, so `from aws_lambda_powertools.x import y`, at import time or inside a function at
    run time, finds the copy. Anything else is imported the ordinary way, shared. The ordinary
    copy of each module is imported first: the stdlib (dataclasses, typing) looks a class's
    module up in sys.modules by name, and must find one.
    """

    def __init__(self, packages: frozenset[str]) -> None:
        self.packages = packages
        self.modules: dict[str, ModuleType] = {}
        self._builtins = {**builtins.__dict__, "__import__": self._import}

    def load(self, name: str) -> ModuleType:
        if name in self.modules:  # loaded (or loading, in this thread: a circular import)
            return self.modules[name]
        with _LOADING:
            if name in self.modules:
                return self.modules[name]
            if name not in sys.modules:
                importlib.import_module(name)
            parent_name, _, child = name.rpartition(".")
            parent = self.load(parent_name) if parent_name else None
            if name in self.modules:  # importing the parent imported it
                return self.modules[name]
            search_path = getattr(parent, "__path__", None)
            if parent is not None and search_path is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            spec = importlib.machinery.PathFinder.find_spec(name, search_path)
            if spec is None or spec.loader is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            module = importlib.util.module_from_spec(spec)
            module.__dict__["__builtins__"] = self._builtins
            # Registered before it runs, as the import system does, so circular imports work;
            # and set on the parent first, so `from package import module` never falls back
            # to sys.modules (the shared copy) while the module is still running.
            self.modules[name] = module
            if parent is not None:
                setattr(parent, child, module)
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del self.modules[name]
                if parent is not None:
                    delattr(parent, child)
                raise
            return module

    def _import(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: tuple[str, ...] | list[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        """`__import__` for modules of this copy (its semantics: importlib.__import__)."""
        absolute = name
        if level:
            namespace = globals or {}
            package = namespace.get("__package__") or str(namespace["__name__"]).rpartition(".")[0]
            absolute = importlib.util.resolve_name("." * level + name, package)
        if absolute.partition(".")[0] not in self.packages:
            return builtins.__import__(name, globals, locals, fromlist or (), level)  # type: ignore[arg-type]
        module = self.load(absolute)
        if fromlist:
            if hasattr(module, "__path__"):
                wanted = [item for item in fromlist if item != "*"]
                if "*" in fromlist:
                    wanted += list(getattr(module, "__all__", []))
                for item in wanted:
                    if not hasattr(module, item):
                        try:
                            self.load(f"{absolute}.{item}")
                        except ModuleNotFoundError as exc:
                            if exc.name != f"{absolute}.{item}":
                                raise
            return module
        if not name:
            return module
        # `import a.b.c` binds `a`: the top of what was named, relative to the package if any.
        return self.load(absolute[: len(absolute) - len(name) + len(name.partition(".")[0])])


@dataclass(frozen=True)
class FunctionConfig:
    """What Lambda runs an invocation with, read from moto's function when it starts."""

    name: str
    arn: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_seconds: int
    variables: Mapping[str, str]  # the process environment Lambda would give it

    @classmethod
    def of(cls, function: Any) -> FunctionConfig:
        variables = {
            "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": str(function.version),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.run_time}",
            "AWS_REGION": str(function.region),
            "_HANDLER": str(function.handler),
            **{str(k): str(v) for k, v in (function.environment_vars or {}).items()},
        }
        return cls(
            name=str(function.function_name),
            arn=str(function.function_arn),
            handler=str(function.handler),
            runtime=str(function.run_time),
            memory_mb=int(function.memory_size or 128),
            timeout_seconds=int(function.timeout or 3),
            variables=MappingProxyType(variables),
        )

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal keys: an environment made for one can serve the other."""
        variables = tuple(sorted(self.variables.items()))
        return (self.handler, self.runtime, self.memory_mb, self.timeout_seconds, variables)


class ExecutionEnvironment:
    """One initialised copy of a function: its modules, loaded once (the cold start)."""

    def __init__(self, config: FunctionConfig, number: int) -> None:
        self.config = config
        self.key = config.key
        self.number = number
        self.busy = True
        self.invocations = 0
        module_name, _, function_name = config.handler.rpartition(".")
        packages = frozenset({module_name.partition(".")[0], *PER_ENVIRONMENT_PACKAGES})
        self.modules = PrivateModules(packages)
        token = FUNCTION_ENVIRONMENT.set(config.variables)  # the init phase sees it too
        try:
            self.handler: Handler = getattr(self.modules.load(module_name), function_name)
        finally:
            FUNCTION_ENVIRONMENT.reset(token)
        self._forget_botocore_initializer()

    def _forget_botocore_initializer(self) -> None:
        """Powertools registers a botocore session initializer when imported (to tag its
        User-Agent). The shared copy has registered the same one; this copy's would keep the
        environment alive after it is retired, and add one more per environment."""
        user_agent = self.modules.modules.get("aws_lambda_powertools.shared.user_agent")
        if user_agent is not None:
            import botocore

            botocore.unregister_initializer(user_agent._initializer_botocore_session)

    def run(self, event: Any, context: FakeLambdaContext) -> Any:
        self.invocations += 1
        token = FUNCTION_ENVIRONMENT.set(self.config.variables)
        try:
            return self.handler(event, context)
        finally:
            FUNCTION_ENVIRONMENT.reset(token)


@dataclass
class Invocation:
    function_name: str
    event: Any
    error_type: str | None
    duration_ms: float
    environment: int = 0  # the number of the execution environment that ran it (0: none)


class InProcessLambdaRuntime:
    """Pools of execution environments per function; a record of invocations for tests."""

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self._pools: dict[str, list[ExecutionEnvironment]] = {}
        self._current: dict[str, tuple[Any, ...]] = {}  # function -> its latest configuration
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def environments(self, function_name: str) -> list[ExecutionEnvironment]:
        with self._lock:
            return list(self._pools.get(function_name, []))

    def invoke(self, function: Any, event: Any) -> tuple[str, bool, str]:
        """moto's `_invoke_lambda`: returns (payload, errored, logs) as its Docker runner does.
        A raised exception becomes Lambda's error payload, errorType being the exception's
        class name: the error name Step Functions' Retry and Catch match on."""
        if isinstance(event, str):
            event = json.loads(event or "{}")
        config = FunctionConfig.of(function)
        started = time.perf_counter()
        try:
            payload, errored = json.dumps(self.call(config, event)), False
        except Exception as exc:
            log.warning("%s raised %s: %s", config.name, type(exc).__name__, exc)
            payload, errored = _error_payload(exc), True
        return payload, errored, f"{config.name} {(time.perf_counter() - started) * 1000:.1f} ms"

    def call(self, config: FunctionConfig, event: Any) -> Any:
        """Run one invocation in an idle environment of the function (or a new one); returns
        what the handler returns, raises what it raises."""
        started = time.perf_counter()
        try:
            environment = self._acquire(config)
        except Exception as exc:  # an init error (Lambda's Runtime.ImportModuleError and kin)
            duration = (time.perf_counter() - started) * 1000
            self.invocations.append(Invocation(config.name, event, type(exc).__name__, duration))
            raise
        context = FakeLambdaContext(
            function_name=config.name,
            memory_limit_in_mb=config.memory_mb,
            timeout_seconds=config.timeout_seconds,
            invoked_function_arn=config.arn,
            log_group_name=f"/aws/lambda/{config.name}",
            log_stream_name=f"environment-{environment.number}",
        )
        error_type = None
        try:
            return environment.run(event, context)
        except Exception as exc:
            error_type = type(exc).__name__
            raise
        finally:
            self._release(environment)
            duration = (time.perf_counter() - started) * 1000
            self.invocations.append(Invocation(config.name, event, error_type, duration, environment.number))

    def _acquire(self, config: FunctionConfig) -> ExecutionEnvironment:
        key = config.key
        with self._lock:
            self._current[config.name] = key
            pool = self._pools.setdefault(config.name, [])
            pool[:] = [e for e in pool if e.busy or e.key == key]  # idle ones of older configs go
            for environment in pool:
                if not environment.busy and environment.key == key:
                    environment.busy = True
                    return environment
            number = next(self._numbers)
        # A cold start, outside the lock: other invocations go on meanwhile.
        environment = ExecutionEnvironment(config, number)
        with self._lock:
            self._pools[config.name].append(environment)
        return environment

    def _release(self, environment: ExecutionEnvironment) -> None:
        with self._lock:
            environment.busy = False
            pool = self._pools[environment.config.name]
            idle = [e for e in pool if not e.busy]
            if environment.key != self._current[environment.config.name] or len(idle) > MAX_IDLE_ENVIRONMENTS:
                pool.remove(environment)


def _error_payload(exc: BaseException) -> str:
    return json.dumps(
        {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exception(exc)[-5:],
        }
    )
