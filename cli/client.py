"""The REST client under every command: the saved login, one request function, errors that map
to exit codes scripts can rely on (see :data:`EXIT_CODES`)."""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

# Exit codes: documented in docs/cli.md; never renumbered.
OK, FAILED, USAGE, NOT_FOUND, DENIED, REFUSED, TIMED_OUT, UNREACHABLE, THROTTLED = range(9)
EXIT_CODES = {
    OK: "success",
    FAILED: "the server failed (5xx) or the operation ended in a failed state",
    USAGE: "the command line is wrong",
    NOT_FOUND: "no such object (404)",
    DENIED: "not logged in, or not allowed (401/403)",
    REFUSED: "the server refused the input (400/409/413/422); the message says what to fix",
    TIMED_OUT: "a --wait ran out of time",
    UNREACHABLE: "the server cannot be reached",
    THROTTLED: "too many requests (429); retry after the time given",
}


class CliError(Exception):
    """One line for the user and the exit code that says what kind of failure it was."""

    def __init__(self, message: str, code: int = FAILED):
        super().__init__(message)
        self.message = message
        self.code = code


def config_path() -> Path:
    if os.environ.get("EMS_CONFIG"):
        return Path(os.environ["EMS_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ems" / "config.json"


@dataclass
class Login:
    url: str
    api_key: str
    username: str = ""
    app_id: str = ""

    def save(self) -> Path:
        """Written 0600 from the first byte (never world-readable, not even briefly)."""
        path = config_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.__dict__, handle, indent=2)
        os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls) -> Login:
        url, key = os.environ.get("EMS_URL"), os.environ.get("EMS_API_KEY")
        if url and key:
            return cls(url=url.rstrip("/"), api_key=key)
        path = config_path()
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CliError(
                "Not logged in: run `ems login --url URL --username NAME` "
                "(or set EMS_URL and EMS_API_KEY).",
                DENIED,
            ) from None
        except (OSError, ValueError) as exc:
            raise CliError(f"Cannot read {path}: {exc}; run `ems login` again.", DENIED) from exc
        return cls(**{k: data.get(k, "") for k in ("url", "api_key", "username", "app_id")})


def error_text(body: Any) -> str:
    """DRF's error bodies in one line: ``detail``, ``error`` or ``field: message; …``."""
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return body["detail"]
        if isinstance(body.get("error"), str):
            return body["error"]
        parts = []
        for field, value in body.items():
            text = error_text(value)
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(body, list):
        return " ".join(error_text(item) for item in body)
    return str(body)


def _code_for(status: int) -> int:
    if status == 404:
        return NOT_FOUND
    if status in (401, 403):
        return DENIED
    if status == 429:
        return THROTTLED
    if 400 <= status < 500:
        return REFUSED
    return FAILED


def raise_for(response: requests.Response) -> None:
    if response.status_code < 400:
        return
    try:
        text = error_text(response.json())
    except ValueError:  # a proxy's or server's page: its words, on one line
        text = " ".join(re.sub(r"<[^>]+>", " ", response.text).split())[:300] or response.reason
    if response.status_code == 429 and response.headers.get("Retry-After"):
        text += f" (retry after {response.headers['Retry-After']} s)"
    method = response.request.method if response.request else ""
    where = response.url.split("/api/v1/", 1)[-1] if response.url else ""
    raise CliError(
        f"{response.status_code} {method} {where}: {text}", _code_for(response.status_code)
    )


class Api:
    """``/api/v1/`` of one portal, authenticated by an API key (or basic auth for login)."""

    def __init__(self, url: str, *, api_key: str = "", auth=None, timeout: float = 60.0):
        self.base = url.rstrip("/") + "/api/v1/"
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        if auth:
            self.session.auth = auth
        self.timeout = timeout

    @classmethod
    def from_login(cls) -> Api:
        login = Login.load()
        return cls(login.url, api_key=login.api_key)

    def request(self, method: str, path: str, **kwargs) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self.base + path.lstrip("/"), **kwargs)
        except requests.ConnectionError as exc:
            raise CliError(
                f"Cannot reach {self.base}: {exc.__class__.__name__}", UNREACHABLE
            ) from None
        except requests.Timeout:
            raise CliError(
                f"{self.base} did not answer within {self.timeout} s", UNREACHABLE
            ) from None
        raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, **kwargs) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", path, **kwargs)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def all(self, path: str, **params) -> list:
        """Every row of a list endpoint, paginated or not."""
        body = self.get(path, **params)
        if isinstance(body, list):
            return body
        rows = list(body.get("results", []))
        while body.get("next"):
            response = self.session.get(body["next"], timeout=self.timeout)
            raise_for(response)
            body = response.json()
            rows.extend(body.get("results", []))
        return rows
