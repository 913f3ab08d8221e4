"""The predict gateway: its own asyncio process in front of the runtime instances.

``python -m gateway --bind 127.0.0.1:8080 --routes redis://…|file:///…``. It never
imports Django and needs no database: routes come from a :mod:`gateway.routes` store. See
docs/gateway.md for routes, statuses, balancing, retries and the drain protocol.
"""
