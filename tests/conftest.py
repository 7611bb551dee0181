import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _state_home(tmp_path_factory):
    """The servers' secret key (stream ids) lives in a temp folder, not the user's home;
    child servers inherit it, so ids survive their restarts as they do in production."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    os.environ.pop("STATE_DIRECTORY", None)
