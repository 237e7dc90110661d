def pytest_configure(config):
    config.addinivalue_line(
        "markers", "network: downloads from Debian's package archive (the default guest; the "
                   "download is cached outside the repository, so later runs reuse it); "
                   "deselect with -m 'not network'")
