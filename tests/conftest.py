import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "network: downloads from Debian's package archive (the default guest, the "
                   "installed Debian; what is downloaded is cached outside the repository, so "
                   "later runs reuse it); deselect with -m 'not network'")


@pytest.fixture(autouse=True)
def imacpro_home(tmp_path, monkeypatch):
    """Every test gets its own empty imacpro home."""
    home = tmp_path / "imacpro-home"
    monkeypatch.setenv("IMACPRO_HOME", str(home))
    return home
