"""The demo: a Telegram bridge as a supervision tree, against embedded loopback servers.

``python -m examples.telegram_bridge`` runs a pool of Pyrogram accounts (dynamic), a
WebSocket session and a Bot API poller, injects faults on a schedule (a FloodWait, a
close frame, a black-holed link, a PoolTimeout, a revoked account), and shows the tree
detecting and recovering in a live view. Ctrl-C shows the ordered shutdown.
"""
