"""The ``ems`` command: the portal's REST API from a terminal or a script (docs/cli.md).

Django-free, like ``gateway`` and ``runtimes``: it talks to a portal only over HTTP."""
