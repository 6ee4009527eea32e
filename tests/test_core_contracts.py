"""core.lifecycle (the session's one owner of long-lived children) and core.redact (no secret leaves)."""
from __future__ import annotations

from pytest_nvme_ai.core.lifecycle import ChildRegistry
from pytest_nvme_ai.core.redact import MASK, redact_argv, redact_text, redact_url


def test_registry_closes_newest_first_once_and_survives_a_failing_closer() -> None:
    reg = ChildRegistry()
    closed: list[str] = []
    reg.register("fork-server", lambda: closed.append("fork-server"))
    reg.register("pool", lambda: (_ for _ in ()).throw(RuntimeError("stuck")))
    reg.register("aio", lambda: closed.append("aio"))
    failures = reg.close_all()
    assert closed == ["aio", "fork-server"]          # the failing pool did not stop the fork server's close
    assert [(f.name, "stuck" in f.error) for f in failures] == [("pool", True)]
    assert reg.close_all() == [] and closed == ["aio", "fork-server"]   # idempotent


def test_registry_reregistered_name_moves_to_newest_and_unregister_drops_it() -> None:
    reg = ChildRegistry()
    order: list[str] = []
    reg.register("a", lambda: order.append("a1"))
    reg.register("b", lambda: order.append("b"))
    reg.register("a", lambda: order.append("a2"))
    reg.register("c", lambda: order.append("c"))
    reg.unregister("c")
    assert reg.names() == ["b", "a"]
    reg.close_all()
    assert order == ["a2", "b"]


def test_redact_url_userinfo_and_query() -> None:
    assert redact_url("postgresql://runner:s3cr3t@db.lab:5432/nvme_ai") == f"postgresql://runner:{MASK}@db.lab:5432/nvme_ai"
    out = redact_url("postgresql://runner@db.lab/nvme_ai?sslmode=require&password=s3cr3t")
    assert "s3cr3t" not in out and "sslmode=require" in out and "password=" in out
    assert redact_url("postgresql://runner@db.lab/nvme_ai") == "postgresql://runner@db.lab/nvme_ai"
    assert redact_url("/tmp/history.sqlite") == "/tmp/history.sqlite"
    assert redact_url("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"       # the empty host's '//' is kept


def test_redact_text_and_argv_mask_secrets_inside_sentences_and_options() -> None:
    msg = "history store postgresql://u:pw1@h/db?PassWord=pw2 is not reachable; host=h password=pw3 port=5"
    out = redact_text(msg)
    assert not any(s in out for s in ("pw1", "pw2", "pw3")) and "is not reachable" in out and "port=5" in out
    argv = ["suites/", "--nvme-ai-history=postgresql://u:pw4@h/db", "--nvme-ai-history", "postgresql://u:pw5@h/db",
            "-k", "password_policy"]
    red = redact_argv(argv)
    assert not any("pw4" in a or "pw5" in a for a in red)
    assert red[0] == "suites/" and red[-1] == "password_policy"   # a plain word is not a secret
