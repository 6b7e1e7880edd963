"""A private Dovecot IMAP server for tests and benchmarks, on loopback, under a temp folder.

Debian's ``dovecot-imapd`` must be installed (omnichannel's own CI installs it); our tests skip
with that reason without it, unless ``OMNICHANNEL_REQUIRE_DOVECOT=1``. Plain IMAP with STARTTLS
on one port, implicit TLS on another, with a self-signed certificate (``root / "cert.pem"``)::

    server = Dovecot().start()
    try:
        ...  # IMAPClient("127.0.0.1", port=server.port, ssl=False), login(server.user, ...)
    finally:
        server.stop()
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER, PASSWORD = "pengaduan", "rahasia-imap"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[str, int, int]:
    """The system user Dovecot's processes and mail files run as."""
    name = "dovecot" if os.geteuid() == 0 else getpass.getuser()
    entry = pwd.getpwnam(name)
    return name, entry.pw_uid, entry.pw_gid


class Dovecot:
    """Start with :meth:`start`, stop with :meth:`stop`; ``port`` is plain/STARTTLS."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="omni-dovecot-"))
        self.root.chmod(0o755)
        self.port, self.tls_port = _free_port(), _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.host, self.user, self.password = "127.0.0.1", USER, PASSWORD

    @staticmethod
    def binary() -> str | None:
        return shutil.which("dovecot") or (
            "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
        )

    def _certificate(self) -> tuple[Path, Path]:
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        return cert, key

    def _config(self) -> Path:
        name, uid, gid = _run_as()
        home = self.root / "home"
        home.mkdir(exist_ok=True)  # kept across a restart (``stop(keep_mail=True)``)
        os.chown(home, uid, gid)
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        cert, key = self._certificate()
        login_user = "dovenull" if os.geteuid() == 0 else name
        conf = self.root / "dovecot.conf"
        conf.write_text(f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {name}
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:~/Maildir
mail_uid = {uid}
mail_gid = {gid}
imap_idle_notify_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
        return conf

    def start(self) -> Dovecot:
        binary = self.binary()
        if binary is None:
            raise FileNotFoundError("dovecot is not installed (apt-get install dovecot-imapd)")
        conf = self._config()
        self.process = subprocess.Popen(
            [binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"dovecot exited: {stderr}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start; log: {self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, *, keep_mail: bool = False) -> None:
        """Stop the server; its folder (and the mail in it) is removed unless ``keep_mail``
        (an outage: ``start()`` brings the same server back on the same ports)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        if not keep_mail:
            shutil.rmtree(self.root, ignore_errors=True)
