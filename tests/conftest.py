import os
import sys
from pathlib import Path

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _state_home(tmp_path_factory):
    """The servers' secret key (stream ids) lives in a temp folder, not the user's home;
    child servers inherit it, so ids survive their restarts as they do in production."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    os.environ.pop("STATE_DIRECTORY", None)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser():
    """Debian's Chromium, one per test module (see viewer_support.launch)."""
    from playwright.async_api import async_playwright
    from viewer_support import launch

    async with async_playwright() as pw:
        b = await launch(pw)
        try:
            yield b
        finally:
            await b.close()
