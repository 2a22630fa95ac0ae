"""An observer-like terminal view of a running tree (rich).

``render(snapshot)`` builds a ``rich.tree.Tree``; ``render_text`` gives plain
text (for logs and tests); ``live_view`` redraws on every event.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._exceptions import MissingExtra
from ._snapshot import ChildSnapshot, ChildState, SupervisorSnapshot

if TYPE_CHECKING:
    import logging

    from rich.console import Console
    from rich.tree import Tree

    from ._api import _Handle
    from ._cluster import PoolRegistry

_STYLE = {
    ChildState.RUNNING: "green",
    ChildState.STARTING: "cyan",
    ChildState.RESTARTING: "yellow",
    ChildState.UNRESPONSIVE: "bold magenta",
    ChildState.STOPPED: "red",
}


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def supervisor_label(snapshot: SupervisorSnapshot) -> str:
    """``root one_for_one restarts=1/3 in 5s``."""
    return (
        f"{snapshot.name} {snapshot.strategy} "
        f"restarts={snapshot.restarts_in_window}/{snapshot.intensity} "
        f"in {snapshot.period:g}s"
    )


def child_label(child: ChildSnapshot) -> str:
    """``ws restarting restarts=4 failures=4 (connection 4) recovered 1/3 last=...``."""
    parts = [child.id, child.state.value, f"restarts={child.restarts}"]
    if child.uptime is not None:
        parts.append(f"up {_seconds(child.uptime)}")
    if child.next_restart_in is not None:
        parts.append(f"restarting in {_seconds(child.next_restart_in)}")
    if child.recovery is not None and child.recovery.failures:
        parts.append(child.recovery.summary())
    if child.last_exit is not None:
        parts.append(f"last={child.last_exit}")
    return " ".join(parts)


#: Handoffs named in the tree view (the rest are counted).
SHOWN_HANDOFFS = 10


def pool_label(summary: Mapping[str, Any]) -> str:
    """``cluster pool member a (etcd) safe for 7.2s members=3 keys=300 takeovers=12``."""
    left = summary["safe_for"]
    if not summary["safe"]:
        safety = "UNSAFE (children stopped)"
    else:
        safety = "safe" if left is None else f"safe for {_seconds(left)}"
    states = " ".join(f"{state}={count}" for state, count in summary["states"].items())
    parts = [
        f"cluster {summary['name']} member {summary['member']} ({summary['mode']}) {safety}",
        f"members={len(summary['members'])} keys={summary['keys']}",
        f"here: {states or 'none'}",
        f"pending={len(summary['pending'])} takeovers={summary['takeovers']}",
    ]
    return " ".join(parts)


def _add_pool(root: Tree, summary: Mapping[str, Any]) -> None:
    from rich.markup import escape

    style = "bold" if summary["safe"] else "bold red"
    node = root.add(f"[{style}]{escape(pool_label(summary))}[/]")
    owned = summary["keys_per_member"]
    for member in sorted({*summary["members"], *owned}):
        alive = "" if member in summary["members"] else " (gone)"
        node.add(escape(f"{member}{alive}: {owned.get(member, 0)} keys"))
    handoffs = summary["handoffs"]
    if handoffs:
        shown = ", ".join(handoffs[:SHOWN_HANDOFFS])
        rest = len(handoffs) - SHOWN_HANDOFFS
        more = f" and {rest} more" if rest > 0 else ""
        node.add(f"[yellow]{escape(f'handing over {len(handoffs)}: {shown}{more}')}[/]")


def render(snapshot: SupervisorSnapshot, cluster: Sequence[Mapping[str, Any]] = ()) -> Tree:
    """The tree as a ``rich.tree.Tree``, states coloured; then each keyed pool's cluster.

    Args:
        snapshot: The tree.
        cluster: Keyed pools' :meth:`~supervisor.cluster.KeyedPool.summary`:
            members with their keys' counts, and the handoffs in progress.
    """
    from rich.markup import escape
    from rich.tree import Tree

    def add(node: Tree, supervisor: SupervisorSnapshot) -> None:
        for child in supervisor.children:
            style = _STYLE[child.state]
            if child.supervisor is not None:
                branch = node.add(
                    f"[{style}]{escape(child.id)}[/] {escape(supervisor_label(child.supervisor))}"
                )
                add(branch, child.supervisor)
            else:
                node.add(f"[{style}]{escape(child_label(child))}[/]")

    root = Tree(f"[bold]{escape(supervisor_label(snapshot))}[/]")
    add(root, snapshot)
    for summary in cluster:
        _add_pool(root, summary)
    return root


def render_text(
    snapshot: SupervisorSnapshot, width: int = 120, cluster: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The tree as plain text, as the live view shows it without colours (see :func:`render`)."""
    with MissingExtra.guard("ops", "supervisor.render_text"):
        from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(
        render(snapshot, cluster)
    )
    return buffer.getvalue()


class TreeViewHook:
    """An event hook that tells the live view to redraw."""

    def __init__(self) -> None:
        self.changed = trio.Event()

    def __call__(self, event: object) -> None:
        self.changed.set()

    async def wait(self, refresh: float) -> None:
        """Wait for an event (or ``refresh`` seconds, to update uptimes)."""
        with trio.move_on_after(refresh):
            await self.changed.wait()
        self.changed = trio.Event()


def console() -> Console:
    """The console the live view draws on (rich's global one)."""
    from rich import get_console

    return get_console()


def log_handler() -> logging.Handler:
    """A logging handler that prints through the live view's console.

    With the view on, a record written straight to stderr lands inside the
    drawn tree and garbles it; through the console, rich prints it above.
    """
    from rich.logging import RichHandler

    return RichHandler(console=console(), show_path=False)


async def live_view(
    handle: _Handle,
    hook: TreeViewHook,
    *,
    refresh: float = 1.0,
    budget: float = 0.05,
    pools: PoolRegistry | None = None,
) -> None:
    """Redraw the tree in the terminal on every event, and every ``refresh`` seconds.

    A redraw is a snapshot and a render on the tree's loop: after one that
    took ``t`` seconds the next waits ``t / budget``, so a large tree's view
    takes at most that share of the loop. The keyed pools in ``pools`` are
    drawn below the tree.
    """
    from rich.live import Live

    def draw() -> Tree:
        return render(handle.snapshot(), [] if pools is None else pools.summaries())

    with Live(draw(), console=console(), auto_refresh=False) as live:
        while handle.running:
            await hook.wait(refresh)
            started = trio.current_time()
            live.update(draw(), refresh=True)
            await trio.sleep((trio.current_time() - started) / budget)
