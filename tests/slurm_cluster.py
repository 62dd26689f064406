"""A real single-node SLURM cluster on localhost, from Debian's packages, for tests.

``LocalSlurm`` writes a slurm.conf into a temporary folder, starts munged (if it is not
running), slurmctld and slurmd, waits until the node is idle, and on ``stop()`` ends only the
daemons it started, by their pid files. Every SLURM command finds the cluster through the
``SLURM_CONF`` variable in :attr:`LocalSlurm.env`. Without systemd: no cgroups
(``proctrack/linuxproc``, ``task/affinity``), no slurmdbd (so Snakemake must poll with
``squeue``), and a countable GRES ``gpu`` without device files so ``gpu=1`` jobs schedule.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DEBIAN_PACKAGES = ("slurm-wlm", "munge")


def ensure_installed() -> str | None:
    """Install SLURM and munge from Debian's packages if missing (root only); None when ready."""
    if shutil.which("slurmctld") and shutil.which("munged"):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "SLURM is not installed and this process cannot apt-get install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr[-500:]}"
    return None


class LocalSlurm:
    """A one-node cluster: partition ``debug``, ``cpus`` CPUs, ``memory_mb`` memory, one fake GPU."""

    def __init__(self, root: Path, cpus: int = 2, memory_mb: int = 16000) -> None:
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.started: list[Path] = []  # pid files of the daemons this object started
        self.cpus, self.memory_mb = cpus, memory_mb

    def write_config(self) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text(
            f"""ClusterName=entmaptest
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        (r / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File=/dev/null\n")

    def _run(self, *command: str, timeout: int = 30) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)

    def _wait(self, check, what: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if check():
                return
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-2000:] for p in self.root.glob("*.log"))
        raise RuntimeError(f"SLURM: timed out waiting for {what}\n{logs}")

    def start(self) -> LocalSlurm:
        self.write_config()
        # Job steps (srun inside a job) look for /etc/slurm/slurm.conf: SLURM_CONF does not reach
        # them. Link ours there unless the machine has its own; removed again by stop().
        self.linked = []
        for name in ("slurm.conf", "gres.conf"):
            system = Path("/etc/slurm") / name
            if not system.exists():
                system.parent.mkdir(parents=True, exist_ok=True)
                system.symlink_to(self.root / name)
                self.linked.append(system)
        if self._run("pgrep", "-x", "munged").returncode != 0:
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, timeout=30)
            self.started.append(Path("/run/munge/munged.pid"))
        Path("/run/slurm").mkdir(parents=True, exist_ok=True)
        subprocess.run(["slurmctld", "-f", str(self.conf)], env=self.env, check=True, timeout=30)
        self.started.append(self.root / "slurmctld.pid")
        self._wait(lambda: "UP" in self._run("scontrol", "ping").stdout, "slurmctld")
        subprocess.run(["slurmd", "-f", str(self.conf)], env=self.env, check=True, timeout=30)
        self.started.append(self.root / "slurmd.pid")
        self._wait(lambda: self._run("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", "the node to be idle")
        return self

    def stop(self) -> None:
        for pid_file in reversed(self.started):
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        self.started.clear()
        for link in getattr(self, "linked", []):
            if link.is_symlink():
                link.unlink()
