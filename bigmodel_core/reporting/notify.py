"""Messages to people when a retraining run closes a gate, fails, or promotes a model.

The flow calls ``send(params, event, title, body)``; every URL in ``params.notify.urls`` gets the
message through Apprise (one URL syntax for Slack, Teams, Discord, e-mail, plain JSON webhooks, ...).
A message is a courtesy, not part of the run: ``send`` never raises, it returns what went wrong and
prints it on stderr. Apprise is imported inside the functions that need it, so importing this
module costs nothing when notifications are off.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import count
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from bigmodel_core.config import Params

EVENTS = ("gate_closed", "failure", "promotion")
_WHAT = {"gate_closed": "quality gate closed", "failure": "run failed", "promotion": "model promoted"}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_THREAD_NUMBERS = count()  # unique delivery-thread names: Apprise's log lines are matched to a URL by name


def event_title(event: str, model_name: str, detail: str = "") -> str:
    """One line for a message title: ``tiny-model: quality gate closed: evaluate.min_macro_f1 ...``."""
    title = f"{model_name}: {_WHAT.get(event, event)}"
    detail = " ".join(detail.split())
    if detail:
        title += f": {detail[:200]}" + ("..." if len(detail) > 200 else "")
    return title


def expand_url(url: str) -> tuple[str, list[str]]:
    """Replace each ${NAME} with the environment variable NAME; also return the names that are not set."""
    missing = [name for name in _VARIABLE.findall(url) if name not in os.environ]
    if missing:
        return url, sorted(set(missing))
    return _VARIABLE.sub(lambda m: os.environ[m.group(1)], url), []


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url`, or None. A URL whose ${VARIABLES} are not set now is not checked
    here (the run that sends may have them); send() reports it if they are still missing then."""
    expanded, missing = expand_url(url)
    if missing:
        return None
    import apprise

    with _apprise_log() as log:
        plugin = apprise.Apprise.instantiate(expanded, asset=apprise.AppriseAsset(async_mode=False))
    if plugin is not None:
        return None
    # Apprise's warnings say which part is wrong ("An invalid Slack (first) Token ..."); its errors only
    # repeat the URL.
    reasons = [m for level, _, m in log if level == logging.WARNING]
    if not reasons and urlsplit(expanded).scheme.lower() in ("http", "https"):
        reasons = ["for a plain webhook write json://host/path (jsons:// for HTTPS)"]
    reason = "; ".join(dict.fromkeys(reasons)) or "no Apprise service takes a URL like this"
    return f"Apprise cannot use {url!r}: {reason}"


def send(params: Params, event: str, title: str, body: str) -> list[str]:
    """Send title and body to every notify.urls entry if `event` is in notify.on.

    Returns one line per problem (empty when every message was delivered or none was due) and
    prints each as a `notify: ...` line on stderr. Never raises.
    """
    try:
        problems = _send(params, event, title, body)
    except Exception as e:  # a notification problem must never fail the run it reports on
        problems = [f"{event}: could not send: {type(e).__name__}: {e}"]
    for line in problems:
        with suppress(OSError, ValueError):  # stderr closed or gone
            print(f"notify: {line}", file=sys.stderr)
    return problems


def _send(params: Params, event: str, title: str, body: str) -> list[str]:
    if event not in EVENTS:
        return [f"unknown event {event!r} (events: {', '.join(EVENTS)}); nothing sent"]
    cfg = params.notify
    if not cfg.urls or event not in cfg.on:
        return []
    import apprise

    notify_type = {
        "gate_closed": apprise.NotifyType.WARNING,
        "failure": apprise.NotifyType.FAILURE,
        "promotion": apprise.NotifyType.SUCCESS,
    }[event]
    problems: list[tuple[int, str]] = []
    deliveries: list[tuple[int, Any, threading.Thread, dict[str, Any], float]] = []
    with _apprise_log(socket_errors=True) as log:
        # Every URL gets its own thread, so one slow service does not delay the others, and the
        # run waits at most a fixed time however a service misbehaves (a DNS lookup ignores cto).
        for i, url in enumerate(cfg.urls):
            where = f"notify.urls[{i}]"
            expanded, missing = expand_url(url)
            if missing:
                problems.append(
                    (i, f"{where}: environment variable(s) {', '.join(missing)} not set; {event} message not sent")
                )
                continue
            plugin = apprise.Apprise.instantiate(expanded, asset=apprise.AppriseAsset(async_mode=False))
            if plugin is None:  # params are checked on load, so only a ${VARIABLE} can get here
                problems.append(
                    (
                        i,
                        f"{where}: Apprise cannot use {url!r} with its ${{...}} variables filled in; "
                        f"{event} message not sent",
                    )
                )
                continue
            _set_timeouts(plugin, expanded, cfg.timeout_seconds)
            result: dict[str, Any] = {}
            thread = threading.Thread(
                target=_deliver,
                args=(apprise.Apprise(plugin), result),
                kwargs=dict(body=body, title=title, notify_type=notify_type, body_format=apprise.NotifyFormat.TEXT),
                name=f"bigmodel-notify-{next(_THREAD_NUMBERS)}",
                daemon=True,
            )
            thread.start()
            deliveries.append((i, plugin, thread, result, _time_limit(plugin)))
        start = time.monotonic()
        for i, plugin, thread, result, limit in deliveries:
            thread.join(max(0.0, start + limit - time.monotonic()))
            service = f"notify.urls[{i}] ({plugin.service_name})"
            if thread.is_alive():
                problems.append((i, f"{service}: no answer within {limit:g}s; {event} message may not have arrived"))
            elif "error" in result:
                problems.append((i, f"{service}: {event} message not sent: {result['error']}"))
            elif not result.get("ok"):
                said = [(level, m) for level, name, m in log if name == thread.name]
                warned = [m.rstrip(".") for level, m in said if level >= logging.WARNING]
                causes = [_short(m) for level, m in said if level < logging.WARNING]
                reason = "; ".join(dict.fromkeys(warned)) or "the service did not accept it"
                if causes:
                    reason += f" ({'; '.join(dict.fromkeys(causes))})"
                problems.append((i, f"{service}: {event} message not delivered: {reason}"))
    return [line for _, line in sorted(problems, key=lambda p: p[0])]


def _deliver(apobj: Any, result: dict[str, Any], **kwargs: Any) -> None:
    try:
        result["ok"] = bool(apobj.notify(**kwargs))
    except Exception as e:  # a plugin bug is a problem line, not a crash
        result["error"] = f"{type(e).__name__}: {e}"


def _set_timeouts(plugin: Any, url: str, seconds: float) -> None:
    # timeout_seconds is the default; a cto= or rto= written in the URL itself wins.
    given = {k.lower() for k, _ in parse_qsl(urlsplit(url).query)}
    if "cto" not in given:
        plugin.socket_connect_timeout = float(seconds)
    if "rto" not in given:
        plugin.socket_read_timeout = float(seconds)


def _time_limit(plugin: Any) -> float:
    # Each try may spend the connect and the read timeout; Apprise's retry= and wait= add tries and pauses.
    tries = 1 + max(0, int(getattr(plugin, "retry", 0) or 0))
    per_try = float(plugin.socket_connect_timeout) + float(plugin.socket_read_timeout)
    return tries * per_try + (tries - 1) * float(getattr(plugin, "wait", 0) or 0) + 1.0


def _short(message: str) -> str:
    # "Socket Exception: HTTPConnectionPool(...): Max retries exceeded ... [Errno 111] Connection refused'))"
    if not message.startswith("Socket Exception"):
        return message
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", message)
    if errno:
        return errno.group(0).strip()
    if "timed out" in message.lower():
        return "timed out"
    return message[:200]


class _Collect(logging.Handler):
    def __init__(self, socket_errors: bool) -> None:
        super().__init__(logging.DEBUG)
        self.socket_errors = socket_errors
        self.records: list[tuple[int, str | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = " ".join(record.getMessage().split())
            # Apprise's warnings say "a connection error occurred"; the cause is a debug line.
            if record.levelno >= logging.WARNING or (self.socket_errors and message.startswith("Socket Exception")):
                self.records.append((record.levelno, record.threadName, message))
        except Exception:
            pass


@contextmanager
def _apprise_log(socket_errors: bool = False) -> Iterator[list[tuple[int, str | None, str]]]:
    """Collect Apprise's warnings (level, thread name, message) instead of letting them reach the console:
    each problem is reported once, as a `notify:` line."""
    logger = logging.getLogger("apprise")
    handler = _Collect(socket_errors)
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    wanted = logging.DEBUG if socket_errors else logging.WARNING
    if logger.getEffectiveLevel() > wanted:
        logger.setLevel(wanted)
    logger.propagate = False
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
