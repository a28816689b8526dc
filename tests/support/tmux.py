"""A real terminal for end-to-end tests of what a person sees: tmux, driven with
send-keys and read with capture-pane. Each Terminal has its own tmux server socket,
so tests never touch a developer's own tmux sessions."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType

from support.wait import wait_for


class Terminal:
    def __init__(self, env: Mapping[str, str], width: int = 160, height: int = 48) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is needed for the terminal tests (apt-get install tmux)")
        self.socket = f"sluice-test-{uuid.uuid4().hex[:8]}"
        self.session = "t"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # A plain shell with exactly the given environment (and a UTF-8 locale, so the
        # plugin draws its Unicode tree).
        self._tmux(
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            str(width),
            "-y",
            str(height),
            f"env -i {exports} LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=xterm-256color "
            "bash --norc --noprofile",
        )
        self._tmux("set-option", "-t", self.session, "history-limit", "5000")

    def _tmux(self, *args: str) -> str:
        r = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        if r.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def run(self, command: str) -> None:
        """Type a command and press Enter."""
        self._tmux("send-keys", "-t", self.session, "-l", command)
        self._tmux("send-keys", "-t", self.session, "Enter")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def screen(self) -> str:
        """What the terminal shows now (the visible pane, no colours)."""
        return self._tmux("capture-pane", "-p", "-t", self.session)

    def history(self) -> str:
        """Everything printed so far, scrolled-off lines included."""
        return self._tmux("capture-pane", "-p", "-S", "-", "-t", self.session)

    def wait(
        self,
        check: Callable[[str], bool],
        what: str,
        timeout: float = 90,
        whole: bool = False,
    ) -> str:
        last = {"screen": ""}

        def probe() -> str | None:
            last["screen"] = self.history() if whole else self.screen()
            return last["screen"] if check(last["screen"]) else None

        try:
            return wait_for(probe, timeout=timeout, what=what, interval=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}; the terminal shows:\n{last['screen']}") from None

    def wait_text(self, *texts: str, timeout: float = 90, whole: bool = False) -> str:
        return self.wait(
            lambda s: all(t in s for t in texts), f"the terminal to show {texts}", timeout, whole
        )

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
