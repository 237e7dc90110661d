"""One machine's T2: its Secure Enclave, NVRAM, boot ROM key and SSD, in the bundle's t2/ dir.

The boot ROM pins the installation's platform public key (`bootrom.pub`) when the chip is made,
as Apple's boot ROM pins Apple's root key: images signed by any other key never verify.
"""

from __future__ import annotations

from pathlib import Path

from imacpro.files import atomic_write
from imacpro.errors import UserError
from imacpro.t2.secure_boot import (EXTERNAL_BOOT, POLICIES, BootImage, Nvram, Settings, Verdict,
                                    evaluate, record_boot)
from imacpro.t2.sep import SecureEnclave
from imacpro.t2.signing import SigningServer, load_public_key, public_pem
from imacpro.t2.storage import EncryptedStore

BOOT_ROM_KEY = "bootrom.pub"


class PasswordRequired(UserError):
    """A setting is protected by the administrator password and none was given."""


class T2:
    def __init__(self, directory: Path, sep: SecureEnclave):
        self.directory = directory
        self.sep = sep
        self.nvram = Nvram(directory, sep)
        try:
            self.boot_rom_key = load_public_key((directory / BOOT_ROM_KEY).read_bytes())
        except OSError:
            raise UserError(f"damaged machine bundle: {directory / BOOT_ROM_KEY} is missing") \
                from None

    @property
    def ecid(self) -> int:
        return self.sep.ecid

    @classmethod
    def create(cls, directory: Path, ecid: int, ssd_capacity: int,
               signer: SigningServer) -> T2:
        directory.mkdir(parents=True, exist_ok=True)
        sep = SecureEnclave.create(directory, ecid)
        atomic_write(directory / BOOT_ROM_KEY, public_pem(signer.public_key))
        chip = cls(directory, sep)
        chip.nvram.save(Settings())
        EncryptedStore.create(directory, ssd_capacity, sep).close()
        return chip

    @classmethod
    def open(cls, directory: Path, ecid: int) -> T2:
        return cls(directory, SecureEnclave.open(directory, ecid))

    # --- Startup Security Utility ---------------------------------------------------------

    def settings(self) -> Settings:
        return self.nvram.load()

    def authorize(self, password: str | None, doing: str = "change security settings") -> None:
        """Changes to security settings, and approving a boot image, need the administrator
        password, if one is set."""
        if self.sep.has_password():
            if password is None:
                raise PasswordRequired("an administrator password is set: it is needed to "
                                       f"{doing}")
            self.sep.check_password(password)

    def change_settings(self, policy: str | None = None, external_boot: str | None = None,
                        password: str | None = None) -> Settings:
        if policy is not None and policy not in POLICIES:
            raise UserError(f"unknown policy {policy!r}: choose full, medium or none")
        if external_boot is not None and external_boot not in EXTERNAL_BOOT:
            raise UserError(f"external boot is 'allow' or 'disallow', not {external_boot!r}")
        self.authorize(password)
        settings = self.nvram.load()
        settings.policy = policy or settings.policy
        settings.external_boot = external_boot or settings.external_boot
        self.nvram.save(settings)
        return settings

    def reset_nvram(self, password: str | None = None) -> Settings:
        """Back to the defaults, e.g. after the NVRAM failed authentication."""
        self.authorize(password)
        self.nvram.save(Settings())
        return Settings()

    # --- boot -----------------------------------------------------------------------------

    def check_boot(self, image: BootImage, signer: SigningServer) -> Verdict:
        """The T2's decision on `image`; an allowed Full Security boot raises the rollback
        floor. The signing server personalizes a ticket for the nonce the T2 makes here."""
        settings = self.nvram.load()
        verdict = evaluate(image, settings, self.boot_rom_key, self.ecid, signer.personalize)
        record_boot(self.nvram, settings, verdict)
        return verdict

    # --- storage and erase ----------------------------------------------------------------

    def open_storage(self) -> EncryptedStore:
        return EncryptedStore.open(self.directory, self.sep)

    def erase(self, ssd_capacity: int) -> None:
        """Erase All Content and Settings: a new effaceable key makes the SSD unreadable at
        once; then a fresh media key and image, default settings and no password."""
        self.sep.erase()
        EncryptedStore.create(self.directory, ssd_capacity, self.sep).close()
        self.nvram.save(Settings())
