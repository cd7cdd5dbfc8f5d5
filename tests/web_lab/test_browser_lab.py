"""A real browser: Debian's headless chromium, run on the lab's client host, loads
``http://<VIP>/mp`` from the PM/SNM pair before and after the master dies, and the page
names the server that served it: lim1, then standby1.

One lab, one failover (the pair is :mod:`mxone_lab.pair`'s); the page texts are printed.
"""

from __future__ import annotations

import html.parser
import shutil
import time
from collections.abc import Iterator

import pytest
from mxone_lab import Lab, pair

from tests.conftest import systemd_lab_up

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"


class _Text(html.parser.HTMLParser):
    """The visible text of a page, a line per block, scripts and styles left out."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._skip += tag in ("script", "style", "head")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style", "head")

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.lines.append(" ".join(data.split()))


def page_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    return "\n".join(parser.lines)


def browse(lab: Lab, url: str) -> str:
    """The DOM chromium built for ``url``, chromium running on the client host with a
    profile of its own in the lab's directory (gone with the lab)."""
    profile = lab.dir / "chromium"
    profile.mkdir(exist_ok=True)
    r = lab.exec(pair.CLIENT, [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--metrics-recording-only",
        f"--user-data-dir={profile}", "--timeout=10000", "--dump-dom", url,
    ], env={"HOME": str(profile)}, timeout=60, check=False)
    assert r.returncode == 0 and "</html>" in r.stdout, f"chromium: {r.returncode}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def configured() -> Iterator[pair.Pair]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (run scripts/bootstrap)")
    with systemd_lab_up(pair.spec()) as lab:
        p = pair.Pair(lab)
        took = p.configure()
        print(f"\n[browser] pair configured: master {took['master']:.1f} s, "
              f"standby {took['standby']:.1f} s")
        yield p


def test_chromium_on_the_client_names_lim1_then_standby1_after_the_failover(
    configured: pair.Pair,
) -> None:
    p = configured
    url = f"http://{pair.VIP}/mp"
    p.serves(pair.MASTER)
    t0 = time.monotonic()
    before = page_text(browse(p.lab, url))
    took = time.monotonic() - t0
    print(f"\n[browser] {url} before the failover ({took:.1f} s):\n{before}")
    assert "Served by lim1" in before and "Database: primary" in before
    p.kill_master()
    p.serves(pair.STANDBY)
    after = page_text(browse(p.lab, url))
    print(f"\n[browser] {url} after the failover:\n{after}")
    assert "Served by standby1" in after and "Database: primary" in after
    assert "Served by lim1" not in after
