"""Web pages of the accounts app (templates in ``templates/accounts/``).

Every page of every app is decorated with ``accounts.door.page`` (or ``door.anonymous``);
``page`` is re-exported here for the pages written before the door.
"""

from accounts.door import anonymous, page

__all__ = ["anonymous", "page"]
