"""The embedded Celery broker and result store: files in folders, written and claimed atomically.

kombu's own ``filesystem://`` transport creates a message file and then writes it, and a
consumer may move and read it in between: the worker gets an empty or half-written message
(``JSONDecodeError``) and dies with "Unrecoverable error". Here every file is written under a
temporary name and renamed into place (a rename within a folder is atomic on POSIX), a consumer
claims a message by renaming it into its own ``claimed/<boot id>-<pid>`` folder (only one
consumer can win) and deletes it when it acknowledges it, and a message that still cannot be
read is moved to the ``dead-letter`` folder with a note saying why, logged, and skipped: one
bad message never stops a worker. Messages claimed by a consumer that died unacknowledged
(kill -9) go back to the queue when the next channel opens.

Selected in settings when ``CELERY_BROKER_URL`` is ``filesystem://`` (see ``portal/settings.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty

from celery.backends.filesystem import FilesystemBackend
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, ensure_bytes, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger("portal.filebroker")

SUFFIX = ".msg"


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees either nothing or all of it."""
    path = os.fsdecode(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip().replace("-", "")[:12]
    except OSError:
        return "boot"


def _alive(boot: str, pid: int) -> bool:
    """Is ``pid`` (of boot ``boot``) still a running process (not a zombie)?"""
    if boot != _boot_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Channel(filesystem.Channel):
    """kombu's filesystem channel with atomic writes, atomic claims and dead letters."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claimed: dict[str, str] = {}  # delivery tag -> its file in our claimed folder
        self._noack_queues: set[str] = set()  # consumed without acknowledgements
        self._recover_orphans()

    # --- messages ------------------------------------------------------------------------------
    def _put(self, queue, payload, **kwargs):
        # Zero-padded nanoseconds: the names sort in the order the messages were sent.
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}{SUFFIX}"
        try:
            write_atomically(os.path.join(self.data_folder_out, name), str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise filesystem.ChannelError(
                f"cannot add a message to {self.data_folder_out}: {exc}"
            ) from exc

    def _names(self, queue) -> list[str]:
        """The queue's message files, oldest first: ``<ns>_<hex>.<queue>.msg``, the queue name
        compared whole (``x.celery.pidbox.msg`` is not a message of queue ``pidbox``)."""
        wanted = f"{queue}{SUFFIX}"
        return sorted(n for n in os.listdir(self.data_folder_in) if n.partition(".")[2] == wanted)

    def _get(self, queue):
        try:
            names = self._names(queue)
        except FileNotFoundError:
            raise Empty() from None
        if not names:
            raise Empty()
        owned = self._owner_folder()
        for name in names:
            claimed = os.path.join(owned, name)
            try:
                # Atomic: of several consumers, exactly one renames the file.
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:
                continue  # another consumer took it
            try:
                with open(claimed, "rb") as fh:
                    raw = fh.read()
                payload = loads(bytes_to_str(raw))
                # What the virtual transport will do with it: fail here, not in the worker.
                tag = self.Message(payload, channel=self).delivery_tag
                if not isinstance(tag, str | int):
                    raise TypeError(f"delivery_tag is a {type(tag).__name__}")
            except Exception as exc:  # whatever is wrong with it, it must not stop the worker
                self._set_aside(claimed, name, queue, exc)
                continue
            if queue in self._noack_queues:
                self._finish(claimed)
            else:
                # Kept until acknowledged: a consumer killed before that leaves it in its
                # claimed folder, and the next channel opened puts it back in the queue.
                self._claimed[tag] = claimed
            return payload
        raise Empty()

    def _finish(self, claimed: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.store_processed:
                os.replace(claimed, os.path.join(self.processed_folder, os.path.basename(claimed)))
            else:
                os.unlink(claimed)

    def _settle(self, delivery_tag) -> None:
        claimed = self._claimed.pop(delivery_tag, None)
        if claimed:
            self._finish(claimed)

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        if no_ack:
            self._noack_queues.add(queue)
        else:
            self._noack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple=multiple)
        self._settle(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False):
        # With requeue the message is written back to the queue (``_restore``) first.
        super().basic_reject(delivery_tag, requeue=requeue)
        self._settle(delivery_tag)

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag)
        return message

    def _restore(self, message):
        # Unacknowledged at a clean close: a fresh copy goes back to the queue, ours goes.
        super()._restore(message)
        self._settle(message.delivery_tag)

    # --- claims of consumers that died -----------------------------------------------------------
    def _owner_folder(self) -> str:
        """``claimed/<boot id>-<pid>/``: whose the claimed messages are (made after a fork too)."""
        path = os.path.join(self.claimed_folder, f"{_boot_id()}-{os.getpid()}")
        if getattr(self, "_owner_made", None) != path:
            os.makedirs(path, exist_ok=True)
            self._owner_made = path
        return path

    def _recover_orphans(self) -> None:
        """Put back the messages claimed by consumers that are gone (kill -9, a crash, a reboot):
        they were never acknowledged, so they are delivered again (tasks are safe to run twice).
        """
        try:
            owners = os.listdir(self.claimed_folder)
        except FileNotFoundError:
            return
        for owner in owners:
            boot, _, pid = owner.rpartition("-")
            folder = os.path.join(self.claimed_folder, owner)
            if not pid.isdigit() or not os.path.isdir(folder) or _alive(boot, int(pid)):
                continue
            restored = 0
            for name in os.listdir(folder):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(os.path.join(folder, name), os.path.join(self.data_folder_in, name))
                    restored += 1
            with contextlib.suppress(OSError):
                os.rmdir(folder)
            if restored:
                log.warning(
                    "broker: %d unacknowledged message(s) of a consumer that is gone (%s) "
                    "put back in the queue",
                    restored,
                    owner,
                )

    def _set_aside(self, claimed: str, name: str, queue: str, exc: Exception) -> None:
        target = os.path.join(self.dead_letter_folder, name)
        reason = f"{type(exc).__name__}: {exc}"[:1000]
        try:
            os.replace(claimed, target)
            write_atomically(target + ".why", reason.encode())
        except OSError as move_exc:
            log.error("could not set aside bad message %s: %s", claimed, move_exc)
            with contextlib.suppress(OSError):
                os.unlink(claimed)
            return
        log.error(
            "broker: unreadable message on queue %r set aside as %s (%s)", queue, target, reason
        )

    def _purge(self, queue):
        count = 0
        for name in self._names(queue):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.data_folder_in, name))
                count += 1
        return count

    def _size(self, queue):
        return len(self._names(queue))

    # --- exchange tables (fanout bindings) -----------------------------------------------------
    @contextlib.contextmanager
    def _table_lock(self, exchange):
        self.control_folder.mkdir(parents=True, exist_ok=True)
        with open(self.control_folder / f".{exchange}.lock", "a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def get_table(self, exchange):
        path = self.control_folder / f"{exchange}.exchange"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(raw))]
        except Exception as exc:  # a broken table must not stop a worker either
            log.error("broker: unreadable exchange table %s (%s); treated as empty", path, exc)
            return []

    def _write_table(self, exchange, queues) -> None:
        write_atomically(
            self.control_folder / f"{exchange}.exchange", str_to_bytes(dumps(list(queues)))
        )

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange):
            queues = self.get_table(exchange)
            if entry not in queues:
                queues.insert(0, entry)
                self._write_table(exchange, queues)

    def _delete(self, queue, *args, **kwargs):
        """A deleted queue (e.g. a worker's auto-delete event queue at shutdown) leaves every
        exchange table and its messages go, so fanout stops filling a queue nobody reads."""
        for path in self.control_folder.glob("*.exchange"):
            exchange = path.name[: -len(".exchange")]
            with self._table_lock(exchange):
                queues = self.get_table(exchange)
                kept = [q for q in queues if q.queue != queue]
                if len(kept) != len(queues):
                    self._write_table(exchange, kept)
        self._purge(queue)

    # --- folders ---------------------------------------------------------------------------------
    @property
    def _root(self) -> Path:
        return Path(self.data_folder_in).parent

    @property
    def claimed_folder(self) -> str:
        return self.transport_options.get("claimed_folder") or str(self._root / "claimed")

    @property
    def dead_letter_folder(self) -> str:
        return self.transport_options.get("dead_letter_folder") or str(self._root / "dead-letter")


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = "filesystem"
    driver_name = "ems-filesystem"

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        options = client.transport_options or {}
        for key in (
            "data_folder_in",
            "data_folder_out",
            "processed_folder",
            "control_folder",
            "claimed_folder",
            "dead_letter_folder",
        ):
            if options.get(key):
                os.makedirs(options[key], exist_ok=True)


class FileResultBackend(FilesystemBackend):
    """Celery's file result backend, writing each result atomically (temp name + rename)."""

    def set(self, key, value):
        write_atomically(self._filename(key), ensure_bytes(value))
