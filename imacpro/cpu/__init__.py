"""The CPU: engine (patched Unicorn), vCPUs, CPUID and MSRs.

Importing this package points Unicorn's Python binding at imacpro's build of the engine
(`_lib/libunicorn.so.2`, see engine.py) before any module loads the library.
"""

import os
from pathlib import Path

LIB_DIR = Path(__file__).with_name("_lib")

# IMACPRO_ENGINE_DIR: another build of the engine (a directory with libunicorn.so.2), for
# working on the engine without replacing the installed one.
if os.environ.get("IMACPRO_ENGINE_DIR"):
    os.environ["LIBUNICORN_PATH"] = os.environ["IMACPRO_ENGINE_DIR"]
elif (LIB_DIR / "libunicorn.so.2").exists():
    os.environ["LIBUNICORN_PATH"] = str(LIB_DIR)
