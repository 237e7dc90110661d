import pytest


@pytest.fixture(autouse=True)
def imacpro_home(tmp_path, monkeypatch):
    """Every test gets its own empty imacpro home."""
    home = tmp_path / "imacpro-home"
    monkeypatch.setenv("IMACPRO_HOME", str(home))
    return home
