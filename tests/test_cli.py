"""The command line as a new user meets it: every mistake is one line and an exit code, found before any work
is done (the database, the snapshot's place, the port), and what a command prints tells what to do next."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aggregator.settings import SettingError, flag
from server.config import ServerSettings
from server.demo import database_lines, shown

AGGREGATOR = [sys.executable, "-m", "aggregator"]
SERVED = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres"}  # `serve` needs one to get that far
SERVED["DATABASE_RO_URL"] = "postgresql://postgres@localhost:5432/postgres"
DATABASE_SETTINGS = ("DATABASE_URL", "DATABASE_RO_URL", "POSTGRES_HOST", "POSTGRES_RO_HOST")
# distributed warns when another cluster holds the default dashboard port; nothing of this project's
DASHBOARD_PORT_WARNING = re.compile(
    r".*UserWarning: Port \d+ is already in use\.\n.*\n.*Hosting the HTTP server on port \d+ instead\n"
    r".*warnings\.warn\(\n"
)


def aggregator(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`python -m aggregator ARGS` in an environment without a database unless `env` gives one."""
    environment = {k: v for k, v in os.environ.items() if k not in DATABASE_SETTINGS} | env
    return subprocess.run([*AGGREGATOR, *args], capture_output=True, text=True, timeout=timeout, env=environment)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return DASHBOARD_PORT_WARNING.sub("", result.stderr).splitlines()


def one_error(result: subprocess.CompletedProcess, code: int) -> str:
    """The one line a failed command printed (argparse's usage lines above it aside)."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in error_lines(result) if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, lines
    return lines[0]


def busy_port() -> socket.socket:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.listen()
    return listener


@pytest.fixture
def junk(tmp_path: Path) -> str:
    path = tmp_path / "junk" / "x.ndjson"
    path.parent.mkdir()
    path.write_text('not a ping\n{"cut short": \n')
    return str(path)


# --- 1. the database is checked before the job; the run says the snapshot is complete and how to publish ------


def test_a_database_that_does_not_answer_fails_before_any_aggregation(junk, tmp_path):
    started = time.monotonic()
    result = aggregator(
        "run",
        "--input",
        junk,
        "--snapshot",
        str(tmp_path / "snap"),
        DATABASE_URL="postgresql://postgres@127.0.0.1:5999/x",
    )
    line = one_error(result, 1)
    assert line.startswith("aggregator: error: cannot connect to the database at 127.0.0.1:5999/x: ")
    assert line.endswith("nothing was aggregated (--no-publish writes the snapshot only)")
    assert "Dask dashboard" not in result.stdout and not (tmp_path / "snap").exists()
    assert time.monotonic() - started < 30  # no cluster was started


def test_a_database_that_does_not_exist_fails_before_any_aggregation(junk, tmp_path):
    result = aggregator(
        "run", "--input", junk, "--snapshot", str(tmp_path / "snap"),
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/ta_no_such_database",
    )  # fmt: skip
    assert one_error(result, 1) == (
        'aggregator: error: database "ta_no_such_database" does not exist: '
        "nothing was aggregated (--no-publish writes the snapshot only)"
    )


def test_a_run_says_the_snapshot_is_complete_and_how_to_publish_it(corpus, tmp_path, scratch_database):
    snapshot, report = str(tmp_path / "snap"), tmp_path / "report.html"
    date = corpus.dates[0]
    result = aggregator(
        "run", "--input", corpus.output, "--date", date, "--snapshot", snapshot, "--workers", "1",
        "--definitions", corpus.histograms_definitions, "--performance-report", str(report),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"the snapshot is complete: 1 submission dates in {snapshot}" in lines
    assert "no database configured (DATABASE_URL or POSTGRES_HOST): the snapshot is not published" in lines
    assert lines[-1] == f"to publish it: aggregator publish --snapshot {snapshot} --date {date}"
    assert "\r" not in result.stdout  # piped: no progress bar
    # Dask's report embeds its scripts, so that it renders offline
    html = report.read_text()
    assert "cdn.bokeh.org" not in html and "Bokeh" in html
    command = lines[-1].removeprefix("to publish it: aggregator ").split()
    url = scratch_database("ta_cli")
    assert aggregator("db", "init", DATABASE_URL=url).returncode == 0
    published = aggregator(*command, DATABASE_URL=url)
    assert published.returncode == 0, published.stderr
    assert aggregator("db", "status", DATABASE_URL=url).stdout.count(date) >= 1


# --- 2 and 5: the snapshot's place ------------------------------------------------------------------------------


def test_all_malformed_input_into_a_new_snapshot_is_one_error_and_creates_nothing(junk, tmp_path):
    snapshot = tmp_path / "new-path"
    result = aggregator("run", "--input", junk, "--snapshot", str(snapshot), "--workers", "1")
    assert one_error(result, 1) == (
        "aggregator: error: 100.0% of pings are malformed (not_json 1, truncated 1), more than --max-bad-fraction 5.0%"
    )
    assert not snapshot.exists()


def test_a_snapshot_path_that_cannot_be_a_store_fails_before_any_aggregation(junk, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("a file\n")
    result = aggregator("run", "--input", junk, "--snapshot", str(afile))
    assert one_error(result, 1) == f"aggregator: error: the snapshot {afile} is a file, not a folder"
    result = aggregator("run", "--input", junk, "--snapshot", str(afile / "snap"))
    assert one_error(result, 1) == f"aggregator: error: the snapshot {afile}/snap cannot be created: {afile} is a file"
    assert "Dask dashboard" not in result.stdout


# --- 3 and 7: settings ---------------------------------------------------------------------------------------


TRUE, FALSE = ("true", "1", "YES", "On"), ("false", "0", "No", "OFF", "False")


@pytest.mark.parametrize(("text", "value"), [(t, True) for t in TRUE] + [(f, False) for f in FALSE])
def test_boolean_settings_take_the_usual_words(monkeypatch, text, value):
    monkeypatch.setenv("API_FORCE_HTTPS", text)
    monkeypatch.setenv("ALLOW_ALL_RELEASE_METRICS", text)
    assert flag("API_FORCE_HTTPS") is value
    settings = ServerSettings.from_env({})
    assert (settings.force_https, settings.allow_all_release_metrics) == (value, value)


@pytest.mark.parametrize("text", ["", "maybe", "T", "2", "enabled"])
def test_other_boolean_words_are_refused(monkeypatch, text):
    monkeypatch.setenv("API_ACCESS_LOG", text)
    with pytest.raises(SettingError, match=re.escape(f"API_ACCESS_LOG={text!r} is not a boolean")):
        ServerSettings.from_env({})


def test_a_bad_setting_is_one_line_and_help_still_works():
    assert aggregator("--help", API_PORT="abc").returncode == 0
    assert one_error(aggregator("serve", API_PORT="abc", **SERVED), 2) == (
        "aggregator: error: API_PORT='abc' is not a whole number from 1 to 65535"
    )
    assert one_error(aggregator("serve", API_FORCE_HTTPS="maybe", **SERVED), 2) == (
        "aggregator: error: API_FORCE_HTTPS='maybe' is not a boolean: use true or false (or 1/0, yes/no, on/off)"
    )
    assert one_error(aggregator("serve", "--port", "99999", **SERVED), 2) == (
        "aggregator serve: error: argument --port: '99999' is not a whole number from 1 to 65535"
    )


# --- 4: a busy port ----------------------------------------------------------------------------------------------


def test_a_busy_port_is_one_line_before_any_work(tmp_path):
    with busy_port() as listener:
        port = listener.getsockname()[1]
        result = aggregator("serve", "--port", str(port), **SERVED)
        assert one_error(result, 1) == f"aggregator: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        started = time.monotonic()
        result = aggregator("demo", "--port", str(port), "--workdir", str(tmp_path / "demo"), **SERVED)
        assert one_error(result, 1) == f"aggregator: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        assert not (tmp_path / "demo").exists() and time.monotonic() - started < 30  # nothing generated nor run


# --- 6 and 10: the demo says which database it used, and its piped log has no progress redraws -----------------


def test_the_demo_names_its_database_and_serves_on_the_given_port(tmp_path, scratch_database):
    url = scratch_database("ta_cli_demo")
    with busy_port() as listener:  # a port that is free once this closes
        port = listener.getsockname()[1]
    result = aggregator(
        "demo", "--no-serve", "--pings", "300", "--days", "1", "--port", str(port), "--workdir", str(tmp_path),
        DATABASE_URL=url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout
    assert f"published into {url}" in result.stdout.splitlines()
    urls = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("http://")]
    assert urls and all(u.startswith(f"http://127.0.0.1:{port}/") for u in urls)
    status = aggregator("db", "status", DATABASE_URL=url)
    assert status.returncode == 0 and "schema version" in status.stdout


def test_the_demo_tells_how_to_reach_a_database_it_chose():
    chosen = {"dsn": "postgresql://postgres@127.0.0.1:5432/telemetry_demo"}
    assert database_lines(chosen, configured=False) == [
        "published into postgresql://postgres@127.0.0.1:5432/telemetry_demo",
        "  for `aggregator db status` or `aggregator serve` on it: "
        "export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/telemetry_demo",
    ]
    assert shown({"dsn": "postgresql://ta:secret@db:5432/telemetry"}) == "postgresql://ta@db:5432/telemetry"
    assert shown({"host": "db", "user": "root", "password": "secret", "database": "telemetry"}) == (
        "postgresql://root@db/telemetry"
    )


# --- 8: Ctrl-C ---------------------------------------------------------------------------------------------------


def test_ctrl_c_during_a_run_is_one_line_and_exit_130(tmp_path):
    generated = aggregator("generate", "--output", str(tmp_path / "pings"), "--pings", "2500", "--files-per-day", "1")
    assert generated.returncode == 0, generated.stderr
    (day,) = (tmp_path / "pings").glob("submission_date=*")
    (part,) = day.iterdir()
    for n in range(1, 8):  # 20,000 pings to read (tens of seconds), without generating them all
        (day / f"copy-{n}.ndjson.gz").hardlink_to(part)
    environment = {k: v for k, v in os.environ.items() if k not in DATABASE_SETTINGS}
    process = subprocess.Popen(
        [*AGGREGATOR, "run", "--input", str(tmp_path / "pings"), "--date", "20261101",
         "--snapshot", str(tmp_path / "snap"), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True,
    )  # fmt: skip
    try:
        for line in process.stdout:
            if line.startswith("aggregating"):
                break
        time.sleep(1)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert one_error(result, 130) == "aggregator: interrupted"
    assert not (tmp_path / "snap").exists()


# --- 10: the rest ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--days", "0"), "argument --days: '0' is not a whole number of at least 1"),
        (("--pings", "-1"), "argument --pings: '-1' is not a whole number of at least 0"),
        (("--files-per-day", "x"), "argument --files-per-day: 'x' is not a whole number of at least 1"),
    ],
)
def test_generate_refuses_counts_it_cannot_use(tmp_path, args, message):
    result = aggregator("generate", "--output", str(tmp_path / "out"), *args)
    assert one_error(result, 2) == f"aggregator generate: error: {message}"
    assert not (tmp_path / "out").exists()


# --- 10: each `db` action has its own help and refuses the options of the others ---------------------------------


def test_each_db_action_has_its_own_help():
    for action, options in {
        "trim": ("--keep-days N", "--base-date", "--dry-run"),
        "rebuild": ("--snapshot URL",),
    }.items():
        result = aggregator("db", action, "--help")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: aggregator db {action} [-h]")
        assert all(option in result.stdout for option in options)
        assert "{init,status,rebuild,trim}" not in result.stdout  # not the generic `db` help


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("status", "--dry-run"), "aggregator: error: unrecognized arguments: --dry-run"),
        (("init", "--snapshot", "x"), "aggregator: error: unrecognized arguments: --snapshot x"),
        (("trim",), "aggregator db trim: error: the following arguments are required: --keep-days"),
        (
            ("trim", "--keep-days", "-1"),
            "aggregator db trim: error: argument --keep-days: '-1' is not a whole number of at least 0",
        ),
        (("rebuild",), "aggregator db rebuild: error: the following arguments are required: --snapshot"),
    ],
)
def test_db_refuses_options_its_action_does_not_take(args, message):
    assert one_error(aggregator("db", *args), 2) == message


# --- a reader that stops early ends the command quietly --------------------------------------------------------


def test_a_closed_pipe_ends_the_command_quietly_with_the_shells_sigpipe_code(scratch_database):
    url = scratch_database("ta_pipe")
    assert aggregator("db", "init", DATABASE_URL=url).returncode == 0
    environment = {k: v for k, v in os.environ.items() if k not in DATABASE_SETTINGS} | {"DATABASE_URL": url}
    with subprocess.Popen(
        [*AGGREGATOR, "db", "status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
    ) as command:
        command.stdout.close()  # as `| head -1` once it has its line: every write of the command fails
        assert command.wait(timeout=60) == 128 + signal.SIGPIPE
        assert command.stderr.read() == b""


# --- 9: the Helm chart checked offline ---------------------------------------------------------------------------


def test_deploy_check_renders_and_validates_the_chart_offline():
    pytest.importorskip("helm_python", reason="the `deploy` extra (helm-python-sdk) is not installed")
    root = Path(__file__).resolve().parent.parent
    assert "\t$(BIN)/python scripts/check_chart.py" in (root / "Makefile").read_text().split("\ndeploy-check:")[1]
    result = subprocess.run([sys.executable, "scripts/check_chart.py"], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[-1] == "chart telemetry-aggregates: lints and renders valid objects for Kubernetes 1.32.0"
    checked = {line.split(":")[0] for line in lines[:-1] if line.endswith(" objects, valid")}
    assert checked == {f"deploy/helm/telemetry-aggregates/ci/{p.name}" for p in (root / "deploy/helm").glob("*/ci/*")}


def test_the_readme_names_the_commands_a_new_user_runs_and_links_the_reference():
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    for text in ("make demo", "make test", ".venv/bin/aggregator", "telemetry_demo"):
        assert text in first_screen, text
    pages = set(re.findall(r"\]\((docs/[\w-]+\.md)\)", readme))
    assert {"docs/job.md", "docs/semantics.md", "docs/api.md", "docs/differences.md", "docs/deploy.md"} <= pages
    assert all((root / page).is_file() for page in pages)
