"""No secret from a history URL reaches any output (issue 22, cases 3 and 4; docs/reliability.md).

A PostgreSQL password given on the command line (`postgresql://user:PW@…`) or in the URL's query
(`?password=PW`) is planted, and every output of a real run is searched for it: the terminal, every file
the run leaves (results.json, index.html, JUnit XML, lock files), and every row of the history store.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pg_cluster
import pytest
from history_data import run_doc

from pytest_nvme_ai.history import HistoryError, open_store
from pytest_nvme_ai.history.flatten import flatten
from pytest_nvme_ai.history.store import redact

USER_PW = "UsrPw" + secrets.token_hex(6)
QUERY_PW = "QryPw" + secrets.token_hex(6)
SECRETS = (USER_PW, QUERY_PW)

needs_pg = pytest.mark.skipif(pg_cluster.missing_reason() is not None, reason=str(pg_cluster.missing_reason()))


def leaks(text: str) -> bool:
    return any(s in text for s in SECRETS)


def test_unreachable_store_error_masks_both_passwords() -> None:
    url = f"postgresql://u:{USER_PW}@/db?host=/nonexistent-nvme-ai-socket-dir&port=1&password={QUERY_PW}"
    with pytest.raises(HistoryError) as exc:
        open_store(url)
    msg = str(exc.value)
    assert "not reachable" in msg and not leaks(msg), msg
    assert "***" in msg


def test_store_display_masks_the_query_password() -> None:
    shown = redact(f"postgresql+psycopg://u:{USER_PW}@db.example/h?sslmode=require&password={QUERY_PW}")
    assert not leaks(shown) and "db.example/h" in shown and "sslmode=require" in shown


def test_sqlite_store_display_keeps_its_path() -> None:
    assert redact("sqlite:////tmp/x/history.sqlite") == "sqlite:////tmp/x/history.sqlite"


def test_history_rows_keep_no_password_from_argv() -> None:
    doc = run_doc("r1", 1)
    doc["run"]["argv"] = ["suites/", "--nvme-ai-history", f"postgresql://u:{USER_PW}@h/db",
                          f"--nvme-ai-history=postgresql://u@h/db?password={QUERY_PW}"]
    rows = flatten(doc)
    assert not leaks(repr(rows)), rows.run["argv_json"]
    assert "--nvme-ai-history" in rows.run["argv_json"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[pg_cluster.PgCluster]:
    if pg_cluster.missing_reason() is not None:
        pytest.skip(str(pg_cluster.missing_reason()))
    c = pg_cluster.new_cluster().start()
    try:
        yield c
    finally:
        c.stop()


def _all_rows(url: str) -> str:
    import sqlalchemy as sa

    from pytest_nvme_ai.history.store import normalise_url

    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            meta = sa.MetaData()
            meta.reflect(c)
            return "\n".join(repr(row) for t in meta.sorted_tables for row in c.execute(sa.select(t)))
    finally:
        engine.dispose()


@needs_pg
def test_no_output_of_a_run_holds_the_planted_password(pytester: pytest.Pytester, cluster: pg_cluster.PgCluster,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_nvme_ai.cli import main

    plain = cluster.createdb("s_" + secrets.token_hex(4))   # trust auth: the planted passwords are not checked
    url = plain.replace("postgresql://postgres@", f"postgresql://postgres:{USER_PW}@") + f"&password={QUERY_PW}"
    pytester.makepyfile(test_demo="""
def test_m(nvme_ai, offload_target):
    nvme_ai.record_samples('bw', [1e8, 1.1e8, 0.9e8])

def test_fails(nvme_ai, offload_target):
    nvme_ai.record_samples('bw', [1e8, 1e8, 1e8])
    assert False, "a failure, so that JUnit and the report carry a traceback"
""")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-history", url,
                                      "--junitxml=junit.xml", "-rA", "-v")
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["nvme-ai history: run * (2 tests) appended to *"])
    found: list[str] = []
    if leaks(r.stdout.str()) or leaks(r.stderr.str()):
        found.append("terminal")
    files = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.name == "results.json" for p in files) and any(p.name == "junit.xml" for p in files)
    for p in files:
        if leaks(p.read_bytes().decode("utf-8", errors="replace")):
            found.append(str(p.relative_to(pytester.path)))
    if leaks(_all_rows(plain)):
        found.append("history rows")
    capsys.readouterr()   # pytester printed its own command line (with the URL): not an output of ours
    assert main(["history", "--history", url]) == 0
    assert main(["history", "--history", url, "--metric", "bw"]) == 0
    out = capsys.readouterr()
    if leaks(out.out + out.err):
        found.append("nvme-ai history output")
    assert found == [], f"the planted password reached: {found}"


def test_nothing_in_this_environment_holds_the_secrets() -> None:
    """The search above is meaningful only if the secrets are not lying around anyway."""
    assert not any(leaks(v) for v in os.environ.values())
