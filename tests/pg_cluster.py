"""A throwaway PostgreSQL cluster for the history tests and benchmarks/history_scale.py.

PostgreSQL refuses to run as root, and pytest-postgresql's process fixture starts it as the current user
(root in CI), so the cluster is started here as the `postgres` user (`runuser -u postgres -- initdb/pg_ctl`)
on a private directory it owns, listening only on a Unix socket in that directory, and removed after.
As a normal user it runs as that user. Debian's `postgresql` package (scripts/setup.sh) provides the binaries.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def server_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin with initdb, else whatever initdb PATH has."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
                   if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


def missing_reason() -> str | None:
    if server_bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql (scripts/setup.sh does)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' user to run the server as (apt-get install postgresql)"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (util-linux): cannot start PostgreSQL as 'postgres'"
    return None


@dataclass
class PgCluster:
    root: Path
    bindir: Path
    port: int = 5432
    started: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.root}&port={self.port}"

    def _run(self, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> PgCluster:
        r = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip()[-2000:]}")
        # Unix socket only, in our own directory: no port clash with any other server, nothing on the network.
        opts = f"-k {self.root} -c listen_addresses= -p {self.port} -c fsync=off -c max_connections=50"
        r = self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"), "-w",
                      "-t", "60", "start")
        if r.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:] if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()[-1000:]} {log}")
        self.started = True
        return self

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def createdb(self, name: str) -> str:
        """A fresh database in the cluster; returns its URL."""
        r = self._run("createdb", "-h", str(self.root), "-p", str(self.port), "-U", "postgres", name)
        if r.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {r.stderr.strip()}")
        return f"postgresql://postgres@/{name}?host={self.root}&port={self.port}"


def new_cluster() -> PgCluster:
    root = Path(tempfile.mkdtemp(prefix="nvme-ai-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o755)
    bindir = server_bin_dir()
    assert bindir is not None, missing_reason()
    return PgCluster(root=root, bindir=bindir)
