"""Markers every test folder shares, applied here so no test file has to remember them (see pytest.ini):

    host  the test needs a real ComfyUI server: every test under host/, and any test that starts one through the
          comfy_server, rel_server or tight_server fixtures
"""

from pathlib import Path

import pytest

HOST_FOLDER = Path(__file__).resolve().parent / "host"
SERVER_FIXTURES = {"comfy_server", "rel_server", "tight_server"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HOST_FOLDER in Path(item.path).resolve().parents or SERVER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.host)
