import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "network: downloads from Debian's package archive (the default guest, the "
                   "installed Debian; what is downloaded is cached outside the repository, so "
                   "later runs reuse it); deselect with -m 'not network'")
    config.addinivalue_line(
        "markers", "longest: boots a machine many times over tens of minutes; queued first")


def pytest_collection_modifyitems(items):
    """The longest tests first, then the other integration tests (each boots a machine for a
    minute or more), then the rest: with the workers of pytest-xdist taking queued tests from
    each other, the run ends with short tests on every core rather than one long one on one."""
    def cost(item) -> int:
        if item.get_closest_marker("longest"):
            return 0
        return 1 if "integration" in item.path.parts else 2
    items.sort(key=cost)        # stable: the files' own order within each group


@pytest.fixture(autouse=True)
def imacpro_home(tmp_path, monkeypatch):
    """Every test gets its own empty imacpro home."""
    home = tmp_path / "imacpro-home"
    monkeypatch.setenv("IMACPRO_HOME", str(home))
    return home
