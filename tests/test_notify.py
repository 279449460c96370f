"""Notifications: real HTTP posts to a receiver on 127.0.0.1, and URL checks when params load."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from bigmodel_core.reporting import notify
from bigmodel_core.config import load_params, parse_params
from bigmodel_core.errors import ConfigError
from tests.conftest import tiny_params_dict, write_params


@pytest.fixture
def receiver():
    """A webhook on 127.0.0.1: records (path, JSON body) of every POST and answers 200."""
    received: list[tuple[str, dict]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            received.append((self.path, json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1], received
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def params_with(**notify_section):
    raw = tiny_params_dict()
    raw["notify"].update(notify_section)
    return parse_params(raw)


@pytest.mark.unit
def test_repo_params_have_notifications_off_for_every_event():
    from tests.conftest import REPO

    p = load_params(REPO / "params.yaml")
    assert p.notify.urls == [] and p.notify.on == ["gate_closed", "failure", "promotion"]
    assert p.notify.timeout_seconds == 10
    assert notify.send(p, "failure", "t", "b") == []


@pytest.mark.unit
def test_event_title_is_one_line():
    assert notify.event_title("gate_closed", "tiny-model", "evaluate.min_macro_f1:\n  0.41 < 0.6") == \
        "tiny-model: quality gate closed: evaluate.min_macro_f1: 0.41 < 0.6"
    assert notify.event_title("promotion", "tiny-model") == "tiny-model: model promoted"
    assert notify.event_title("failure", "m", "x" * 500) == "m: run failed: " + "x" * 200 + "..."


@pytest.mark.parametrize("event, kind", [("gate_closed", "warning"), ("failure", "failure"), ("promotion", "success")])
def test_each_event_posts_title_body_and_type(receiver, event, kind, capsys):
    port, received = receiver
    p = params_with(urls=[f"json://127.0.0.1:{port}/hook"])
    title = notify.event_title(event, p.deploy.model_name, "evaluate.min_macro_f1:\n  0.41 < 0.6")
    problems = notify.send(p, event, title, f"body of {event}\nsecond line")

    assert problems == []
    assert capsys.readouterr().err == ""
    assert len(received) == 1
    path, doc = received[0]
    assert path == "/hook"
    assert doc["title"] == title
    assert doc["message"] == f"body of {event}\nsecond line"
    assert doc["type"] == kind


def test_every_url_gets_the_message(receiver):
    port, received = receiver
    p = params_with(urls=[f"json://127.0.0.1:{port}/a", f"json://127.0.0.1:{port}/b"])
    assert notify.send(p, "promotion", "promoted", "v3 is champion") == []
    assert sorted(path for path, _ in received) == ["/a", "/b"]
    assert {doc["message"] for _, doc in received} == {"v3 is champion"}


def test_an_event_not_in_on_sends_nothing(receiver):
    port, received = receiver
    p = params_with(urls=[f"json://127.0.0.1:{port}/hook"], on=["failure"])
    assert notify.send(p, "promotion", "promoted", "body") == []
    assert notify.send(p, "gate_closed", "gate", "body") == []
    assert received == []
    assert notify.send(p, "failure", "failed", "body") == []
    assert [doc["title"] for _, doc in received] == ["failed"]


def test_unknown_event_is_a_problem_not_an_exception(receiver):
    port, received = receiver
    p = params_with(urls=[f"json://127.0.0.1:{port}/hook"])
    problems = notify.send(p, "gate-closed", "t", "b")
    assert len(problems) == 1 and "unknown event 'gate-closed'" in problems[0]
    assert received == []


def test_unreachable_url_is_a_problem_line_and_the_others_still_get_it(receiver, capsys):
    port, received = receiver
    dead = closed_port()
    p = params_with(urls=[f"json://127.0.0.1:{dead}/hook", f"json://127.0.0.1:{port}/ok"], timeout_seconds=2)
    problems = notify.send(p, "failure", "run failed", "train: CUDA out of memory")

    assert len(problems) == 1
    assert problems[0].startswith("notify.urls[0] (JSON): failure message not delivered:")
    assert "\n" not in problems[0]
    assert capsys.readouterr().err == f"notify: {problems[0]}\n"
    assert [path for path, _ in received] == ["/ok"]


def test_a_receiver_that_never_answers_is_abandoned_after_the_timeout():
    # Accepts the connection but never replies: only the read timeout can end the wait.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        p = params_with(urls=[f"json://127.0.0.1:{silent.getsockname()[1]}/hook"], timeout_seconds=0.5)
        done: list[list[str]] = []
        worker = threading.Thread(target=lambda: done.append(notify.send(p, "failure", "t", "b")), daemon=True)
        worker.start()
        worker.join(30)  # generous: the point is that it returns, not how fast
    assert done, "send() did not return"
    assert len(done[0]) == 1 and done[0][0].startswith("notify.urls[0] (JSON): failure message not delivered")


def test_unset_environment_variable_is_a_problem_at_send_time(receiver, monkeypatch):
    port, received = receiver
    monkeypatch.delenv("BIGMODEL_TEST_HOOK_PORT", raising=False)
    p = params_with(urls=["json://127.0.0.1:${BIGMODEL_TEST_HOOK_PORT}/hook"])  # loads: may be set when sending
    problems = notify.send(p, "failure", "t", "b")
    assert problems == ["notify.urls[0]: environment variable(s) BIGMODEL_TEST_HOOK_PORT not set; "
                        "failure message not sent"]
    monkeypatch.setenv("BIGMODEL_TEST_HOOK_PORT", str(port))
    assert notify.send(p, "failure", "t", "b") == []
    assert [path for path, _ in received] == ["/hook"]


@pytest.mark.unit
def test_a_url_apprise_does_not_understand_is_a_config_error_naming_the_key(tmp_path):
    raw = tiny_params_dict()
    raw["notify"]["urls"] = ["json://127.0.0.1:8123/hook", "nosuchservice://example/hook"]
    path = write_params(tmp_path, raw)
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert str(e.value).startswith(f"{path}: notify.urls[1]: ")
    assert "'nosuchservice://example/hook'" in str(e.value)


@pytest.mark.parametrize("url, says", [
    ("slack://", "Slack"),
    ("https://example.com/hook", "json://"),
])
@pytest.mark.unit
def test_url_errors_say_what_is_wrong(url, says):
    raw = tiny_params_dict()
    raw["notify"]["urls"] = [url]
    with pytest.raises(ConfigError, match=r"notify\.urls\[0\]") as e:
        parse_params(raw)
    assert repr(url) in str(e.value) and says in str(e.value)


@pytest.mark.unit
def test_on_and_timeout_are_checked():
    with pytest.raises(ConfigError, match=r"notify\.on\[0\]"):
        params_with(on=["deploy"])
    with pytest.raises(ConfigError, match=r"notify\.timeout_seconds.*greater than 0"):
        params_with(timeout_seconds=0)


@pytest.mark.unit
def test_a_bare_on_key_reads_as_on(tmp_path):
    # PyYAML (YAML 1.1) turns an unquoted `on:` into the key True.
    raw = tiny_params_dict()
    raw["notify"]["on"] = ["failure"]
    text = yaml.safe_dump(raw, sort_keys=False).replace("'on':", "on:")
    assert "\n  on:\n" in text
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml").notify.on == ["failure"]
    # an override adds the string key beside True; the override wins
    assert load_params(tmp_path / "params.yaml", ["notify.on=[promotion]"]).notify.on == ["promotion"]
    raw["notify"] = {True: ["failure"]}
    assert parse_params(raw).notify.on == ["failure"]


@pytest.mark.unit
def test_timeout_seconds_sets_connect_and_read_timeouts_unless_the_url_does():
    import apprise

    plugin = apprise.Apprise.instantiate("json://127.0.0.1:9/x?rto=30")
    notify._set_timeouts(plugin, "json://127.0.0.1:9/x?rto=30", 2.5)
    assert (plugin.socket_connect_timeout, plugin.socket_read_timeout) == (2.5, 30.0)
