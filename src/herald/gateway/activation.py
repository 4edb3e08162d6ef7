"""A listening socket handed over by a supervisor (systemd socket activation, sd_listen_fds(3)).

When the supervisor owns the listening socket, restarting the node leaves nothing refused:
connections that arrive while no node runs wait in the kernel's accept queue and are served by
the next node as soon as it starts. The protocol: the supervisor passes the socket as file
descriptor 3 and sets ``LISTEN_FDS`` (how many) and ``LISTEN_PID`` (the pid they are for).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence

SD_LISTEN_FDS_START = 3


class ActivationError(Exception):
    """The supervisor's hand-over is unusable; the message names the problem."""


def inherited_listener() -> socket.socket | None:
    """The socket passed by a supervisor, or None when none was passed to this process.

    Like sd_listen_fds(unset_environment=1), the variables are removed so that processes this
    one starts do not take the socket for theirs.
    """
    env = os.environ
    count, pid = env.pop("LISTEN_FDS", None), env.pop("LISTEN_PID", None)
    env.pop("LISTEN_FDNAMES", None)
    if count is None:
        return None
    if pid is None or not pid.isdigit() or int(pid) != os.getpid():
        return None  # meant for another process, e.g. a shell that started this one
    if count != "1":
        raise ActivationError(f"LISTEN_FDS={count}: Herald serves exactly one inherited socket")
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError as exc:
        raise ActivationError(f"LISTEN_FDS=1 but file descriptor 3 is not a socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        sock.detach()
        raise ActivationError("the inherited socket (fd 3) is not a TCP socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ActivationError("the inherited socket (fd 3) is not listening")
    sock.setblocking(False)
    os.set_inheritable(sock.fileno(), False)
    return sock


def describe(sock: socket.socket) -> str:
    """``host:port`` a listening socket is bound to, for the start-up line."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# The supervisor's half, run in the child between fork and exec: what systemd does for a
# socket unit. For supervisors written in Python (the test suite and the benchmarks use it).
_HAND_OVER = """
import os, sys
fd, count, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
os.dup2(fd, 3)
if fd != 3:
    os.close(fd)
os.environ.update(LISTEN_FDS=count, LISTEN_PID=str(os.getpid()))
os.execv(argv[0], argv)
"""


def handed_over(cmd: Sequence[str], fd: int, fd_count: str = "1") -> list[str]:
    """``cmd`` run as a socket-activating supervisor runs it: ``fd`` becomes file descriptor 3,
    ``LISTEN_FDS`` says how many sockets there are and ``LISTEN_PID`` is the pid of the process
    that runs ``cmd`` (``exec`` keeps it). Start it with ``pass_fds=(fd,)``; ``cmd[0]`` must be
    a path."""
    return [sys.executable, "-c", _HAND_OVER, str(fd), fd_count, *cmd]
