"""A Docker daemon of the tests' own, and the images the compose-stack test runs, on a machine
where no registry image can be pulled and bridge networks must not be used.

- The daemon: Debian's dockerd with --bridge=none --iptables=false, its data, exec root and
  socket under FORECAST_DOCKER_ROOT (default /var/tmp/forecast-docker), never the machine's
  own Docker; started and stopped (by its PID) by the test session.
- The base image: Debian bookworm from debootstrap with python3.11, pip and venv, standing in
  for python:3.11-slim (python and pip on the PATH, system installs allowed).
- The project's image: the real Dockerfile built on that base.

Both images stay in the daemon's data root between runs, tagged by a hash of what they are built
from, so a re-run builds nothing that did not change.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.paths import REPO

ROOT = Path(os.environ.get("FORECAST_DOCKER_ROOT", "/var/tmp/forecast-docker"))
SOCKET = ROOT / "run" / "docker.sock"
DOCKER_ENV = {
    "DOCKER_HOST": f"unix://{SOCKET}",
    "DOCKER_CONFIG": str(ROOT / "config"),  # cli-plugins/docker-compose (scripts/ensure_docker.sh)
    "DOCKER_BUILDKIT": "0",  # the daemon is 20.10 and the client has no buildx: the classic builder
}
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What python:3.11-slim has that the Dockerfile relies on: python3.11, pip, venv, CA certificates.
BASE_PACKAGES = ["python3", "python3-pip", "python3-venv", "ca-certificates"]
BASE_REPOSITORY = "forecast-base"
BASE_RECIPE = "bookworm minbase v1"  # change to rebuild the base when base_image() changes
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IMAGE_REPOSITORY = "demand-forecast-airflow"
# What the Dockerfile copies into the image (.dockerignore drops the rest).
IMAGE_SOURCES = [
    "Dockerfile",
    ".dockerignore",
    "requirements.lock",
    "pyproject.toml",
    "include",
    "dags",
    "plugins",
    "feature_repo",
    "config",
    "deploy/airflow",
]
DAEMON_START_TIMEOUT = 60
DAEMON_STOP_TIMEOUT = 60


class DockerUnavailable(RuntimeError):
    """The platform cannot run the daemon (not root, no apt-get): the caller skips, saying why."""


def ensure_docker() -> None:
    """Install docker.io, debootstrap and the compose plugin if missing (scripts/ensure_docker.sh)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure_docker.sh")],
        env={**os.environ, "FORECAST_DOCKER_ROOT": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode == 2:
        raise DockerUnavailable(done.stderr.strip())
    if done.returncode != 0:
        raise RuntimeError(f"scripts/ensure_docker.sh failed:\n{done.stdout}{done.stderr}")


def docker(*args: str, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """The docker CLI against the tests' daemon; output captured as text unless redirected."""
    kwargs.setdefault("capture_output", "stdout" not in kwargs)
    done = subprocess.run(
        ["docker", *args], env={**os.environ, **DOCKER_ENV}, text=True, timeout=timeout, **kwargs
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def _answers() -> bool:
    return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30).returncode == 0


def _stop(pid: int) -> None:
    """Stop a dockerd that is not this process's child (a killed run's), by its PID."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + DAEMON_STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)


def _leftover_daemon() -> int | None:
    """The PID of a dockerd a killed test run left on this data root, if any."""
    pidfile = ROOT / "run" / "dockerd.pid"
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return (
        pid
        if cmdline and cmdline[0].endswith(b"dockerd") and str(ROOT).encode() in b" ".join(cmdline)
        else None
    )


@contextmanager
def docker_daemon() -> Iterator[int]:
    """Start the tests' dockerd (one test session at a time: a lock on its root) and stop it,
    by its PID, afterwards; yields the PID."""
    (ROOT / "run").mkdir(parents=True, exist_ok=True)
    with open(ROOT / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session's run finishes first
        if (pid := _leftover_daemon()) is not None:
            _stop(pid)
        log = open(ROOT / "dockerd.log", "ab")
        daemon = subprocess.Popen(
            [
                "dockerd",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                f"--data-root={ROOT / 'data'}",
                f"--exec-root={ROOT / 'exec'}",
                f"--pidfile={ROOT / 'run' / 'dockerd.pid'}",
                f"--host=unix://{SOCKET}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + DAEMON_START_TIMEOUT
            while not _answers():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    tail = (ROOT / "dockerd.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"dockerd did not start:\n{tail}")
                time.sleep(0.5)
            yield daemon.pid
        finally:
            daemon.terminate()  # dockerd stops its containers and its containerd first
            try:
                daemon.wait(DAEMON_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
            log.close()


def _tree_hash(paths: list[str], *extra: str) -> str:
    digest = hashlib.sha256()
    for item in extra:
        digest.update(item.encode())
    for name in paths:
        path = REPO / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False, timeout=60).returncode == 0


def _drop_other_tags(repository: str, keep: str) -> None:
    """Images of earlier sources: only the current one is worth its disk space."""
    listed = docker("image", "ls", repository, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    stale = [tag for tag in listed if tag != keep]
    if stale:
        docker("image", "rm", *stale, check=False)
    docker("image", "prune", "--force", check=False)


def base_image() -> tuple[str, bool]:
    """The Debian bookworm base (debootstrap, then docker import); returns its tag and whether
    it was built now."""
    recipe = hashlib.sha256(" ".join([BASE_RECIPE, *BASE_PACKAGES]).encode())
    for cert in sorted(LOCAL_CAS.glob("*.crt")):
        recipe.update(cert.read_bytes())
    tag = f"{BASE_REPOSITORY}:bookworm-{recipe.hexdigest()[:12]}"
    if _image_exists(tag):
        return tag, False
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=ROOT))
    try:
        rootfs = work / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=1200,
        )
        # python:3.11-slim lets pip install into the system Python, and has `python` and `pip`.
        for marker in (rootfs / "usr" / "lib").glob("python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        for name, target in (("python", "python3"), ("pip", "pip3")):
            link = rootfs / "usr" / "bin" / name
            if not link.exists():
                link.symlink_to(target)
        # The certificate authorities this machine trusts beyond Debian's (a site's TLS proxy):
        # pip and uv in the image's build reach PyPI through whatever the host goes through.
        for cert in LOCAL_CAS.glob("*.crt"):
            shutil.copy(cert, rootfs / "usr" / "local" / "share" / "ca-certificates" / cert.name)
        subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True, capture_output=True)
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        docker(
            "import",
            "--change",
            f"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "
            f"SSL_CERT_FILE={CA_BUNDLE} PIP_CERT={CA_BUNDLE}",  # uv and pip: the system's CAs
            "--change",
            'CMD ["python3"]',
            "-",
            tag,
            stdin=tar.stdout,
            timeout=600,
        )
        assert tar.wait() == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _drop_other_tags(BASE_REPOSITORY, tag)
    return tag, True


def project_image(base: str) -> tuple[str, bool]:
    """The project's image from the real Dockerfile on ``base``, tagged by a hash of the
    Dockerfile, the lock and the sources it copies; returns its tag and whether it was built now."""
    base_id = docker("image", "inspect", base, "--format", "{{.Id}}").stdout.strip()
    tag = f"{IMAGE_REPOSITORY}:test-{_tree_hash(IMAGE_SOURCES, base_id)}"
    if _image_exists(tag):
        return tag, False
    log = ROOT / "build.log"
    with open(log, "w") as out:
        # The build's RUN steps reach PyPI over the host's network (there is no bridge).
        done = docker(
            "build",
            "--network=host",
            f"--build-arg=BASE_IMAGE={base}",
            f"--tag={tag}",
            str(REPO),
            check=False,
            timeout=1800,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise RuntimeError(f"docker build failed:\n{log.read_text()[-4000:]}")
    _drop_other_tags(IMAGE_REPOSITORY, tag)
    return tag, True
