"""README: property-test the demo's real tree, and catch a deliberately broken one."""

import attrs
import pytest
from hypothesis import given, settings

import specs
from examples.telegram_bridge._tree import Bridge, Endpoints, build_tree
from supervisor.testing import check_tree, fault_schedules

urls = Endpoints("ws://127.0.0.1:9/", "http://127.0.0.1:9/bot/getUpdates", [])
tree = build_tree(urls, Bridge())


def bot_always_comes_back(run):  # the poller must never stay down
    for exit in run.steps("exit", child="bot"):
        assert exit.detail.endswith(":restart"), f"the bot stays down after {exit}"


@settings(max_examples=100, deadline=None)
@given(fault_schedules(tree))
def test_bridge(schedule):
    """The demo's tree: as the model predicts, and the bot always comes back."""
    check_tree(tree, schedule, invariants=bot_always_comes_back)


accounts, relay = tree.children  # the same tree, its bot made TEMPORARY by mistake
exchange, bot = relay.start.children
bot = attrs.evolve(bot, restart=specs.TEMPORARY)
relay = attrs.evolve(relay, start=attrs.evolve(relay.start, children=[exchange, bot]))
broken = attrs.evolve(tree, children=[accounts, relay])


def test_broken_bridge_is_caught():
    """Hypothesis finds a schedule where the broken tree leaves the bot down."""

    @settings(max_examples=200, deadline=None, database=None)
    @given(fault_schedules(broken))
    def run(schedule):
        check_tree(broken, schedule, invariants=bot_always_comes_back)

    with pytest.raises(AssertionError, match="the bot stays down"):
        run()
