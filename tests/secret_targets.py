"""Trees for the secrets tests' command-line runs (the bot token comes from ``SECRET_TOKEN``)."""

from __future__ import annotations

import os

import trio

import specs
import supervisor
import workers
from workers.testing import open_botapi_server


async def _ignore(update: workers.Update) -> None:
    """A handler that does nothing."""


async def _poll_a_while(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve a loopback Bot API, poll it through a nested tree, return after a few polls."""
    async with open_botapi_server(token=os.environ["SECRET_TOKEN"]) as server:
        worker = workers.PollingLoopWorker(
            workers.PollingConfig(url=server.method_url("getUpdates"), poll_timeout=0.0), _ignore
        )
        inner = specs.SupervisorSpec(name="pollers", children=[worker.child_spec("poller")])
        async with supervisor.open_supervisor(inner):
            task_status.started()
            with trio.fail_after(30):
                await server.wait_until(lambda: server.calls["getUpdates"] >= 5)


def polling_tree() -> specs.SupervisorSpec:
    """A tree that polls a loopback Bot API with ``SECRET_TOKEN``, then ends itself."""
    return specs.SupervisorSpec(
        name="secrets",
        auto_shutdown=specs.AutoShutdown.ANY_SIGNIFICANT,
        children=[
            specs.ChildSpec(
                id="app", start=_poll_a_while, restart=specs.TRANSIENT, significant=True
            )
        ],
    )


def mistyped_tree() -> specs.SupervisorSpec:
    """A tree whose poller's URL has a mistyped scheme."""
    token = os.environ["SECRET_TOKEN"]
    worker = workers.PollingLoopWorker(
        workers.PollingConfig(url=f"htps://api.telegram.org/bot{token}/getUpdates"),
        _ignore,
    )
    return specs.SupervisorSpec(children=[worker.child_spec("poller")])
