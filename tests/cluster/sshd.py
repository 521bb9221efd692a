"""Throw-away SSH plumbing for a real `ray up` on this machine: an unprivileged user, an sshd of the test's own on a
loopback port, a ProxyCommand relay to that port, and a Python environment the user may execute.

Why a user of its own: `ray up` and `ray down` run `ray stop` on the head, which kills every Ray process its user may
kill, found by name. As root that would end every other Ray instance on the machine (other tests, other sweeps); as
a fresh unprivileged user it can only end its own.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import psutil
except ImportError:  # Ray ships psutil in its thirdparty_files, which `import ray` puts on sys.path
    import ray  # noqa: F401, I001
    import psutil

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"  # sshd re-executes itself: it needs its absolute path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_key(path: Path) -> Path:
    """A fresh ed25519 key pair without passphrase: `path` (private) and `path`.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "priorsweep-ci", "-f", str(path)],
                   check=True, timeout=30, capture_output=True)
    return path


# --- the user ---------------------------------------------------------------------------------------------------

@dataclass
class CiUser:
    name: str
    uid: int
    gid: int
    home: Path

    def own(self, *paths: Path) -> None:
        for path in paths:
            os.chown(path, self.uid, self.gid)

    def processes(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["username"]):
            if process.info["username"] in (self.name, str(self.uid)):
                found.append(process)
        return found


def create_user(home: Path) -> CiUser:
    """A new unprivileged user with its home at `home`. Password '*': no password login, but not a locked account
    (with `UsePAM no`, sshd refuses any login to a locked one, key or not)."""
    name = f"priorsweep-ci-{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--password", "*",
                    name], check=True, timeout=60, capture_output=True, text=True)
    entry = pwd.getpwnam(name)
    return CiUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def kill_processes(processes: list[psutil.Process], grace_s: float = 5.0) -> list[str]:
    """SIGTERM, then SIGKILL after `grace_s`, each process by its pid; returns what was found alive."""
    described = []
    for process in processes:
        try:
            described.append(f"{process.pid} {' '.join(process.cmdline())[:160] or process.name()}")
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return described


def wait_until_no_processes(user: CiUser, timeout_s: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while (left := user.processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def delete_user(user: CiUser) -> None:
    """Ends whatever the user still runs (by pid), then deletes the user, its group and its home."""
    for _ in range(3):
        kill_processes(user.processes())
        done = subprocess.run(["userdel", "--remove", user.name], timeout=60, capture_output=True, text=True)
        if done.returncode in (0, 6, 12):  # 6: no such user; 12: home not removed (the test removes its tmp dir)
            return
        time.sleep(1)
    raise RuntimeError(f"userdel {user.name} failed: {done.stderr.strip()}")


# --- the Python the user runs -------------------------------------------------------------------------------------

def user_runs(user: CiUser, argv: list[str], env: dict[str, str] | None = None) -> bool:
    """Whether `argv` succeeds when run as the user."""
    try:
        done = subprocess.run(argv, user=user.uid, group=user.gid, extra_groups=[], cwd=user.home, timeout=180,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(user.home), **(env or {})},
                              capture_output=True)
    except PermissionError:  # e.g. the interpreter lies under root's home (mode 700)
        return False
    return done.returncode == 0


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def python_for_user(user: CiUser, where: Path) -> tuple[Path, dict[str, str]]:
    """(a bin directory holding `python` and `ray` of this test's environment that the user can execute, extra
    environment variables they need).

    That is the test's own venv bin directory when the user may run it. When the venv's base interpreter lies where
    the user cannot reach it (here: a pyenv build under /root, mode 700), a shadow venv is made under `where`: the
    same interpreter and standard library hard-linked (nothing copied, nothing under /root changed), the venv's
    site-packages by symlink (readable by all), and `ray` rewritten to start with that interpreter.
    """
    venv_bin = Path(sys.executable).parent
    probe = ["-c", "import ray, sweeps"]
    if user_runs(user, [str(venv_bin / "python"), *probe]):
        return venv_bin, {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base_prefix, interpreter = Path(sys.base_prefix), Path(os.path.realpath(sys.executable))
    base = where / "python"
    (base / "bin").mkdir(parents=True)
    _link_or_copy(interpreter, base / "bin" / version)
    shutil.copytree(base_prefix / "lib" / version, base / "lib" / version, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "turtledemo"))
    extra = {}
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):  # the interpreter's RUNPATH points under /root: say where
        for library in (base_prefix / "lib").glob("libpython*"):
            _link_or_copy(library, base / "lib" / library.name)
        extra["LD_LIBRARY_PATH"] = str(base / "lib")
    venv = where / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\ninclude-system-site-packages = false\n"
                                     f"version = {'.'.join(map(str, sys.version_info[:3]))}\n")
    (venv / "lib").symlink_to(Path(sys.prefix) / "lib")  # the test venv's site-packages, the project's editable hook
    for name in ("python", "python3", version):
        (venv / "bin" / name).symlink_to(base / "bin" / version)
    script = (venv_bin / "ray").read_text().splitlines(keepends=True)
    (venv / "bin" / "ray").write_text(f"#!{venv / 'bin' / 'python'}\n" + "".join(script[1:]))
    (venv / "bin" / "ray").chmod(0o755)
    if not user_runs(user, [str(venv / "bin" / "python"), *probe], extra):
        raise RuntimeError(f"the shadow venv {venv} does not run for {user.name}")
    return venv / "bin", extra


# --- sshd and the relay -------------------------------------------------------------------------------------------

RELAY = '''#!{python} -IS
"""ssh ProxyCommand: pipes stdin/stdout to 127.0.0.1:{port} (Ray's cluster YAML has no ssh port option)."""
import os, socket, sys, threading
connection = socket.create_connection(("127.0.0.1", {port}))
def upstream():
    while chunk := os.read(0, 65536):
        connection.sendall(chunk)
    connection.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
out = sys.stdout.buffer
while chunk := connection.recv(65536):
    out.write(chunk)
    out.flush()
'''


def write_relay(path: Path, port: int) -> Path:
    """An executable ProxyCommand (no spaces in its path or arguments: rsync re-splits Ray's --rsh string)."""
    path.write_text(RELAY.format(python=sys.executable, port=port))
    path.chmod(0o700)
    return path


class LoopbackSshd:
    """`sshd -D -e -f CONFIG` on 127.0.0.1:PORT in its own process group, letting in only `user`, by key."""

    def __init__(self, workdir: Path, user: CiUser, authorized_keys: Path):
        self.workdir, self.user, self.authorized_keys = workdir, user, authorized_keys
        self.port = free_port()
        self.log = workdir / "sshd.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> LoopbackSshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        host_key = make_key(self.workdir / "ssh_host_ed25519_key")
        config = self.workdir / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1", f"Port {self.port}", f"HostKey {host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}", f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.user.name}", "PermitRootLogin no", "PubkeyAuthentication yes",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "X11Forwarding no", "PrintMotd no", "PrintLastLog no", "MaxSessions 32", "MaxStartups 32",
            "LogLevel VERBOSE", "",
        ]))
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True, timeout=30, capture_output=True, text=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as probe:
                    if probe.recv(64).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"sshd did not answer on 127.0.0.1:{self.port}:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Ends the listener's process group and every connection process it forked (those call setsid)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        kill_processes(children)
