"""Issue 12 item 4: Chromium keeps its sandbox wherever the worker is not root."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil
import pytest

from activities.crawl.browser import BrowserPool, sandbox_enabled
from conveyor.settings import Settings
from tests.helpers import assert_eventually

CHROMIUM = Settings().chromium_path


def test_the_sandbox_is_on_unless_the_process_is_root() -> None:
    assert sandbox_enabled("auto", euid=1000) is True
    assert sandbox_enabled("auto", euid=0) is False
    assert sandbox_enabled("on", euid=0) is True
    assert sandbox_enabled("off", euid=1000) is False
    assert Settings().chromium_sandbox == "auto"
    pool = BrowserPool(CHROMIUM, [], "ConveyorBot/0.1")
    assert pool.sandbox is (os.geteuid() != 0)
    assert "--no-sandbox" not in pool.args  # only Playwright adds it, and only when the sandbox is off


def _renderers(root: psutil.Process) -> list[psutil.Process]:
    """Chromium's renderer processes under ``root`` (a helper that exited meanwhile, or is a zombie, is none)."""
    return [p for p in root.children(recursive=True) if "--type=renderer" in " ".join(_cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):  # Chromium's short-lived helpers come and go
        return []


def _seccomp_mode(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Seccomp:"):
            return int(line.split()[1])
    return -1


@pytest.mark.needs_chromium
@pytest.mark.process
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to nobody")
async def test_chromium_runs_sandboxed_as_a_non_root_user() -> None:
    # pytest's tmp_path sits under a root-only folder: nobody needs a home it can reach
    home = Path(tempfile.mkdtemp(prefix="conveyor-sandbox-"))
    profile = home / "profile"
    profile.mkdir()
    os.chown(home, 65534, 65534)
    os.chown(profile, 65534, 65534)
    # Debian's /usr/bin/chromium is a wrapper script that forks: start the binary itself, so its tree is ours
    binary = "/usr/lib/chromium/chromium" if Path("/usr/lib/chromium/chromium").exists() else CHROMIUM
    browser = await asyncio.create_subprocess_exec(
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", binary, "--headless", "--disable-gpu",
        f"--user-data-dir={profile}", "--remote-debugging-port=0", "--no-first-run", "data:text/html,<p>sandboxed</p>",
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "")},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        root = psutil.Process(browser.pid)

        async def renderer_started() -> None:
            assert _renderers(root)

        await assert_eventually(renderer_started, within_s=60, interval=0.2)
        renderer = _renderers(root)[0]
        assert renderer.uids().effective == 65534
        assert "--no-sandbox" not in renderer.cmdline()
        assert _seccomp_mode(renderer.pid) == 2  # the seccomp-bpf sandbox filters the renderer's system calls
        # and it lives in a user namespace of its own (the namespace sandbox)
        assert os.readlink(f"/proc/{renderer.pid}/ns/user") != os.readlink("/proc/self/ns/user")
    finally:
        os.killpg(browser.pid, signal.SIGKILL)  # the browser and every process it started
        await browser.wait()
        shutil.rmtree(home, ignore_errors=True)
