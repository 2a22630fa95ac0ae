"""Trees for the command-line tests (``python -m supervisor run tests.cli_targets:...``)."""

from __future__ import annotations

import trio

import specs
from supervisor.cluster import KeyedPoolSpec


async def steady(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A child that runs until stopped."""
    task_status.started()
    await trio.sleep_forever()


tree = specs.SupervisorSpec(
    name="cli",
    children=[specs.ChildSpec(id="a", start=steady), specs.ChildSpec(id="b", start=steady)],
)


def make_tree() -> specs.SupervisorSpec:
    """A function returning a spec, as the runner accepts too."""
    return tree


def broken_tree() -> specs.SupervisorSpec:
    """A function whose spec is invalid."""
    return specs.SupervisorSpec(children=[], intensity=-1)


not_a_tree = 42


def raising_factory() -> specs.SupervisorSpec:
    """A function that fails before it returns a spec."""
    msg = "no config file"
    raise FileNotFoundError(msg)


def needs_arguments(config: str) -> specs.SupervisorSpec:
    """A function the runner cannot call: it needs an argument."""
    return tree


async def async_tree() -> specs.SupervisorSpec:
    """An async function, given where a spec or a plain function is expected."""
    return tree


def _keyed_child(key: str) -> specs.ChildSpec:
    return specs.ChildSpec(id="session", start=steady, shutdown=0.1)


#: A keyed pool of three keys (embedded, or on the cluster given with ``--etcd``).
pool = KeyedPoolSpec(keys=["k-0", "k-1", "k-2"], factory=_keyed_child, name="accounts")
