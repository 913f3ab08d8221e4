"""A pytest plugin for the mutation runs only (``-p tests.mutation.fast``): the fixtures create
users, and the production password hasher (hundreds of thousands of PBKDF2 rounds) would be
most of each run's time. What the checked modules decide does not depend on it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
