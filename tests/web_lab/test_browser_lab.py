"""A real browser: Debian's headless chromium, run on the lab's client host, loads
``http://<VIP>/mp`` from the PM/SNM pair before and after the master dies, and the page
names the server that served it: lim1, then standby1.

A row stored through the VIP before the failover is on both pages. One lab, one failover
(the pair is :mod:`mxone_lab.pair`'s); the page texts are printed.
"""

from __future__ import annotations

import html.parser
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from mxone_lab import Lab, pair

from tests.conftest import systemd_lab_up

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"


class _Text(html.parser.HTMLParser):
    """The visible text of a page, a line per block element (inline ones stay on their
    line), the head, scripts and styles left out."""

    BLOCKS = frozenset({"p", "h1", "h2", "li", "ul", "form", "footer", "div", "body"})

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = [""]
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._skip += tag in ("script", "style", "head")
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style", "head")
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.lines[-1] += data

    def _break(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.lines.append("")


def page_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    lines = (" ".join(line.split()) for line in parser.lines)
    return "\n".join(line for line in lines if line)


def chromium(lab: Lab, profile_name: str, url: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of chromium dumping ``url``'s DOM, with a profile and a
    HOME of its own in the lab's directory (gone with the lab), no background traffic."""
    profile = lab.dir / profile_name
    profile.mkdir(exist_ok=True)
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--metrics-recording-only",
        f"--user-data-dir={profile}", "--dump-dom", url,
    ]
    return argv, {"HOME": str(profile)}


def browse(lab: Lab, url: str) -> str:
    """The DOM chromium, run on the client host, built for ``url``."""
    argv, env = chromium(lab, "chromium", url)
    r = lab.exec(pair.CLIENT, argv, env=env, timeout=60, check=False)
    assert r.returncode == 0 and "</html>" in r.stdout, f"chromium: {r.returncode}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def configured() -> Iterator[pair.Pair]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (run scripts/bootstrap)")
    with systemd_lab_up(pair.spec()) as lab:
        # A first chromium from a cold disk cache takes up to 18 s here: load it while the
        # pair is configured.
        argv, env = chromium(lab, "warm-up", "about:blank")
        warm = lab.popen(pair.CLIENT, argv, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        p = pair.Pair(lab)
        took = p.configure()
        warm.wait(timeout=60)
        print(f"\n[browser] pair configured: master {took['master']:.1f} s, "
              f"standby {took['standby']:.1f} s")
        yield p


def test_chromium_on_the_client_names_lim1_then_standby1_after_the_failover(
    configured: pair.Pair,
) -> None:
    p = configured
    url = f"http://{pair.VIP}/mp"
    p.serves(pair.MASTER)
    p.synchronous(pair.MASTER)  # a row committed now is on standby1 too
    answers = pair.records(p.client("write", "written-before-the-failover", "0.01"))
    stored = [r for r in answers if "id" in r]
    assert stored, f"no row stored through the VIP: {answers}"
    t0 = time.monotonic()
    before = page_text(browse(p.lab, url))
    took = time.monotonic() - t0
    print(f"\n[browser] {url} before the failover ({took:.1f} s):\n{before}")
    assert "Served by lim1" in before and "Database: primary" in before
    assert f"#{stored[0]['id']} written-before-the-failover-1 (stored on lim1)" in before
    p.kill_master()
    p.serves(pair.STANDBY)
    t0 = time.monotonic()
    after = page_text(browse(p.lab, url))
    took = time.monotonic() - t0
    print(f"\n[browser] {url} after the failover ({took:.1f} s):\n{after}")
    assert "Served by standby1" in after and "Database: primary" in after
    assert "Served by lim1" not in after
    assert f"#{stored[0]['id']} written-before-the-failover-1 (stored on lim1)" in after
