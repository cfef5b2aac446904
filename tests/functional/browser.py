"""Debian's Chromium for the browser tests, launched the one way this project allows.

``playwright install`` cannot download browsers here, so every browser test drives
``/usr/bin/chromium`` (the ``chromium`` package) headless with the flags below; tests skip
when it is missing (each checks ``CHROMIUM`` itself).
"""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking"]


async def launch_chromium(pw: Any) -> Any:
    """A Playwright browser on Debian's Chromium (``pw``: an ``async_playwright()``)."""
    return await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
