"""The default guest: Debian bookworm's kernel and busybox with an initramfs of our own, built
into the cache by `imacpro guest fetch` and booted when no kernel is given (build.py says how).

    build(force=False, progress=…) -> Guest   fetch and build (network: Debian's archive)
    load() -> Guest | None                    the cached guest, if built and intact
    make_initramfs(busybox, modules, init)    the initramfs bytes (pure)
    exec_option(command)                      "imacpro.exec=<base64>" for the kernel command line
"""

from imacpro.guest.build import (
    DEFAULT_CMDLINE,
    READY_MARKER,
    Guest,
    build,
    cache_dir,
    console_script,
    exec_option,
    guest_dir,
    image_version,
    init_script,
    load,
    make_initramfs,
    print_to_stderr,
    report,
)

__all__ = ["DEFAULT_CMDLINE", "READY_MARKER", "Guest", "build", "cache_dir", "console_script",
           "exec_option",
           "guest_dir", "image_version", "init_script", "load", "make_initramfs",
           "print_to_stderr", "report"]
