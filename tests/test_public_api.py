"""Tests of the public surface: the exact names each package exports, each reporting its
public home, and the handle types that the entry points are annotated with."""

from __future__ import annotations

import ast
import importlib
import inspect
import traceback
import types
import typing
from pathlib import Path

import pytest
import trio

import specs
import supervisor
from supervisor import DynamicSupervisorHandle, SupervisorHandle


def names(words: str) -> frozenset[str]:
    """The set of whitespace-separated names."""
    return frozenset(words.split())


# The public names, pinned: adding, removing or renaming one is a decision, made here.
PUBLIC_NAMES: dict[str, frozenset[str]] = {
    "specs": names(
        """
        ALL_SIGNIFICANT ANY_SIGNIFICANT AnySupervisorSpec AutoShutdown BRUTAL_KILL Backoff
        BrutalKill ChildKind ChildSpec Classifier DEFAULT_INTENSITY DEFAULT_PERIOD
        DEFAULT_SHUTDOWN Decision DynamicSupervisorSpec FIELD_REPORT_POLICY FailurePolicy
        INFINITY KindRule NEVER ONE_FOR_ALL ONE_FOR_ONE PERMANENT REST_FOR_ONE
        Restart SUPERVISOR ShutdownValue SpecError Strategy SupervisorSpec TEMPORARY
        TRANSIENT WORKER shard_for validate
        """
    ),
    "specs.policy": names(
        """
        ChildView ExitAction ExitKind FailedStart FailureVerdict RestartPlan add_restart
        auto_shutdown_due backoff_delay count_failure exit_action failed_start healthy_after
        judge_failure plan_restart restart_delay restarts_in_window
        """
    ),
    "supervisor": names(
        """
        ChildAlreadyPresent ChildAlreadyStarted ChildContext ChildCounts ChildInfo
        ChildNotFound ChildRestarting ChildRunning ChildSnapshot ChildState ChildUnresponsive
        DynamicSupervisorHandle EXIT_BAD_SPEC EXIT_GAVE_UP EXIT_OK EXIT_SHUTDOWN_TIMEOUT
        EXIT_START_FAILED Event ExitReason FailedToStartChild Hook KindRecovery
        MaxChildrenReached MaxIntensityReached MissingExtra RecoverySnapshot Shutdown
        SupervisorHandle SupervisorNotRunning SupervisorSnapshot current_child
        current_supervisor logging_hook open_supervisor render_text run run_supervisor
        shutdown_grace structlog_hook
        """
    ),
    "supervisor.cluster": names(
        """
        Claim ClusterConfig ClusterConfigError EtcdClient EtcdRequestFailed EtcdUnavailable
        KeyValue KeyedPool KeyedPoolSpec WatchCompacted WatchEvent cluster_config_from_env
        current_claim
        open_keyed_pool rendezvous_assignment rendezvous_owner
        """
    ),
    "supervisor.events": names(
        """
        ChildExited ChildRestarted ChildStarted ChildTerminated DEFAULT_MAX_BUFFER Event
        EventReceiveChannel EventsDropped GaveUp Hook KeyAcquired KeyLost KeyReleased
        MemberJoined MemberLeft RestartScheduled ShutdownTimedOut StartFailed StreamEvent
        logging_hook
        """
    ),
    "supervisor.testing": names(
        """
        Action Fault FaultSchedule Puppets Scenario ScenarioChild ScriptedCrash
        ScriptedStartError Step TraceLine TraceMismatch TreeMachine TreePuppets TreeRun
        TreeRunner Unmodelled check_tree fault_schedules normalise_trace puppet_tree
        run_scenario run_tree scenario_spec scenarios simulate trace_diff
        """
    ),
    "workers": names(
        """
        ACCOUNT_BACKOFF ApiError AuthRevoked CallTimeout CalleeExited Classifier Conflict
        ConnectionLost Context Crashed DEFAULT FAILURE_KINDS Failure FileOffsetStore
        FloodWait HandlerFailure HeartbeatTimeout Mailbox MemoryOffsetStore NameTaken
        NotRunning OffsetStore OnHandlerFailure PollingConfig PollingConfigError
        PollingLoopWorker PollingStats PoolExhausted ProxyFailed PyrogramClientWorker
        PyrogramConfig PyrogramConfigError PyrogramUpdate RECONNECT_BACKOFF RateLimited
        Registry RequestRejected Rule SaveOffset ServerError Update UpdateFailed
        UpdateHandler UpdatesStalled WebSocketConfig WebSocketConfigError WebSocketMessage
        WebSocketSession WebSocketSessionWorker Worker account_pool httpx_rule network_rule
        pyrogram_client_rule pyrogram_rule registry status_failure websocket_rule
        DEFAULT_SECRET_NAMES REDACTED REDACTED_LOGGERS SecretFilter install_log_redaction
        redact redact_exception register_secret register_secret_names
        OnStaleUpdate STATUS_FAILURES StaleUpdates UnexpectedStop
        """
    ),
    "workers.testing": names(
        """
        AUTH_KEY_DUPLICATED AUTH_KEY_UNREGISTERED Account BotApiFault BotApiFaultAction
        BotApiRequest BotApiResponder BotApiServer ConnectProxy Fault FaultAction
        LOOPBACK_CA_PEM METHOD_INVALID MTProtoServer RPC_CALL_FAIL RpcFailure TcpRelay
        WebSocketServerBehaviour WebSocketServerConnection WebSocketTestServer
        generate_auth_key loopback_client_ssl_context open_botapi_server open_connect_proxy
        open_mtproto_server open_tcp_relay open_websocket_test_server redirect_pyrogram
        session_string
        """
    ),
}

PUBLIC_MODULES = sorted(PUBLIC_NAMES)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_are_pinned(name: str) -> None:
    """Each public module exports exactly its pinned names, in a sorted __all__."""
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    assert set(module.__all__) == PUBLIC_NAMES[name]
    for attribute in module.__all__:
        assert hasattr(module, attribute), attribute


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_classes_and_functions_report_a_public_home(name: str) -> None:
    """Every exported class and function names a public module that holds it as __module__."""
    module = importlib.import_module(name)
    for attribute in module.__all__:
        value = getattr(module, attribute)
        if not isinstance(value, type | types.FunctionType):
            continue  # constants, instances and type aliases carry no defining module
        home = value.__module__
        assert home in PUBLIC_NAMES, f"{name}.{attribute} reports {home}"
        assert getattr(importlib.import_module(home), value.__name__) is value, attribute


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_modules_only_reexport(name: str) -> None:
    """A public module defines no class or function of its own (a lazy __getattr__ aside)."""
    path = Path(importlib.import_module(name).__file__ or "")
    tree = ast.parse(path.read_text())
    defined = [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    assert defined in ([], ["__getattr__"]), f"{name} defines {defined}"


def test_tracebacks_show_the_public_name() -> None:
    """A traceback names supervisor.MaxIntensityReached, not its private module."""
    error = supervisor.MaxIntensityReached("root", "a", None)
    line = traceback.format_exception_only(error)[-1]
    assert line.startswith("supervisor.MaxIntensityReached: supervisor 'root' reached")


def test_exceptions_refine_builtins() -> None:
    """Each exception subclasses the builtin whose meaning it shares."""
    assert issubclass(specs.SpecError, ValueError)
    assert issubclass(supervisor.ChildNotFound, LookupError)
    assert issubclass(supervisor.MissingExtra, ImportError)
    for name in (
        "MaxIntensityReached",
        "FailedToStartChild",
        "ChildAlreadyStarted",
        "ChildAlreadyPresent",
        "ChildRunning",
        "ChildRestarting",
        "ChildUnresponsive",
        "MaxChildrenReached",
        "SupervisorNotRunning",
    ):
        assert issubclass(getattr(supervisor, name), RuntimeError), name
        assert getattr(supervisor, name).__doc__, name


@pytest.mark.parametrize("handle_type", [SupervisorHandle, DynamicSupervisorHandle])
def test_handles_have_no_public_constructor(handle_type: type) -> None:
    """Calling a handle class raises TypeError: only the runtime makes handles."""
    with pytest.raises(TypeError, match="has no public constructor"):
        handle_type()


@pytest.mark.parametrize("handle_type", [SupervisorHandle, DynamicSupervisorHandle])
def test_handles_are_final_and_fully_typed(handle_type: type) -> None:
    """Each handle is final, and every public method annotates its parameters and result."""
    assert getattr(handle_type, "__final__", False)
    for attribute, value in inspect.getmembers(handle_type):
        if attribute.startswith("_"):
            continue
        function = value.fget if isinstance(value, property) else value
        if not callable(function):
            continue
        hints = typing.get_type_hints(function)
        parameters = list(inspect.signature(function).parameters)[1:]  # self
        assert "return" in hints, attribute
        assert set(parameters) <= set(hints), attribute


async def worker(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A child that runs until stopped."""
    task_status.started()
    await trio.sleep_forever()


async def test_open_supervisor_yields_the_handle_its_overload_declares() -> None:
    """A static spec yields a SupervisorHandle, a dynamic one a DynamicSupervisorHandle."""
    static = specs.SupervisorSpec(children=[specs.ChildSpec(id="a", start=worker)])
    dynamic = specs.DynamicSupervisorSpec(template=specs.ChildSpec(id="w", start=worker))
    async with supervisor.open_supervisor(static, hooks=[]) as sup:
        typing.assert_type(sup, SupervisorHandle)
        assert type(sup) is SupervisorHandle
    async with supervisor.open_supervisor(dynamic, hooks=[]) as dyn:
        typing.assert_type(dyn, DynamicSupervisorHandle)
        assert type(dyn) is DynamicSupervisorHandle
        assert await dyn.start_child() in {info.id for info in dyn.which_children()}


async def test_run_supervisor_hands_a_typed_task_status_its_handle() -> None:
    """A caller's TaskStatus[SupervisorHandle] may be forwarded, and gets a SupervisorHandle."""
    static = specs.SupervisorSpec(children=[specs.ChildSpec(id="a", start=worker)])

    async def tree(task_status: trio.TaskStatus[SupervisorHandle]) -> None:
        await supervisor.run_supervisor(static, hooks=[], task_status=task_status)

    async with trio.open_nursery() as nursery:
        sup = await nursery.start(tree)
        assert type(sup) is SupervisorHandle
        await sup.shutdown()
