"""A one-node SLURM cluster run on this machine for the slow tests (``cluster`` fixture).

Debian's ``slurm-wlm`` and ``munge`` are installed with apt-get when missing (CI runs as root);
slurmctld, slurmd and munged run under a temporary folder with their own configuration, so
nothing outside it changes.
"""

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo", "slurmctld", "slurmd",
           "munged")  # fmt: skip


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def install_slurm() -> str | None:
    """Install slurm-wlm and munge when missing; return why it cannot, or None."""
    if all(which(name) for name in DAEMONS):
        return None
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not which("apt-get"):
        return "SLURM is not installed, and installing it needs root and apt-get (Debian/Ubuntu)"
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"]):  # fmt: skip
        done = subprocess.run(command, env=environment, capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip
        if done.returncode != 0:
            return f"`{shlex.join(command)}` failed: {done.stderr.strip()[-500:]}"
    missing = [name for name in DAEMONS if not which(name)]
    return f"installed slurm-wlm and munge but {missing} are missing" if missing else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """slurmctld, slurmd and munged for one node, configured and run under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name in ("state", "spool", "log", "run"):
            (folder / name).mkdir(parents=True)
        key = folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = folder / "run" / "munge.socket"
        self.conf = folder / "slurm.conf"
        node = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]  # fmt: skip
        self.hostname = node.split()[0].removeprefix("NodeName=")
        self.cpus = int(re.search(r"CPUs=(\d+)", node).group(1))
        self.conf.write_text(
            "\n".join([
                "ClusterName=aunettest",
                f"SlurmctldHost={self.hostname}(127.0.0.1)",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "AuthType=auth/munge",
                f"AuthInfo=socket={socket_path}",
                "CredType=cred/munge",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={folder / 'state'}",
                f"SlurmdSpoolDir={folder / 'spool'}",
                f"SlurmctldPidFile={folder / 'run' / 'slurmctld.pid'}",
                f"SlurmdPidFile={folder / 'run' / 'slurmd.pid'}",
                f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "MpiDefault=none",
                "ReturnToService=2",
                "KillWait=5",
                "MinJobAge=600",
                f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ])
        )  # fmt: skip
        self.environment = {**os.environ, "SLURM_CONF": str(self.conf)}
        munge = [which("munged"), "--foreground", "--force", f"--socket={socket_path}",
                 f"--key-file={key}", f"--log-file={folder / 'log' / 'munged.log'}",
                 f"--pid-file={folder / 'run' / 'munged.pid'}",
                 f"--seed-file={folder / 'state' / 'munged.seed'}"]  # fmt: skip
        self.processes = [self._start(munge, "munged")]
        time.sleep(1)
        self.processes.append(self._start([which("slurmctld"), "-D", "-f", str(self.conf)], "ctld"))
        self.processes.append(self._start([which("slurmd"), "-D", "-f", str(self.conf)], "slurmd"))
        self._wait_until_idle()

    def _start(self, command: list[str], name: str) -> subprocess.Popen:
        with (self.folder / "log" / f"{name}.out").open("w") as output:
            return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)

    def _wait_until_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-o", "%T", check=False).strip()
            if state == "idle":
                return
            time.sleep(1)
        logs = "\n".join(p.read_text()[-1500:] for p in (self.folder / "log").glob("*"))
        raise RuntimeError(f"the test cluster did not come up (sinfo: {state!r})\n{logs}")

    def run(self, *command: str, check: bool = True) -> str:
        done = subprocess.run(command, env=self.environment, capture_output=True, text=True,
                              check=False)  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)}: {done.stderr.strip()}")
        return done.stdout

    def state(self, job: str) -> str:
        """``JobState`` of a job (or array task) from ``scontrol show job``."""
        found = re.search(r"JobState=(\w+)", self.run("scontrol", "show", "job", job))
        return found.group(1) if found else "UNKNOWN"

    def wait(self, jobs: list[str], timeout: float) -> None:
        """Until none of ``jobs`` is pending or running."""
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-j", ",".join(jobs), check=False).strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {jobs} still queued:\n{self.run('squeue')}")
            time.sleep(2)

    def stop(self) -> None:
        """Cancel whatever is left, then stop the daemons this object started."""
        jobs = self.run("squeue", "-h", "-o", "%i", check=False).split()
        if jobs:
            self.run("scancel", *jobs, check=False)
            time.sleep(3)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
