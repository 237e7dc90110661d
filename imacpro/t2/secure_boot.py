"""Secure boot: the Startup Security Utility settings and the T2's decision on each boot image.

Policies (Apple Platform Security, "Startup Security Utility"):
  full    only the current, personalized, signed OS: a ticket from the signing server bound to
          this chip's ECID and a fresh boot nonce, and no version below the highest this
          machine has booted (anti-rollback)
  medium  any image with a valid signature from the platform key; no personalization, no
          rollback check
  none    anything
External boot (media other than the internal SSD): disallowed by default, under every policy.

Settings and the anti-rollback version live in `nvram.toml`, authenticated by a MAC with a key
the Secure Enclave derives from the UID: a hand-edited file is detected and nothing boots until
the settings are reset (`imacpro security NAME --reset-nvram`, which needs the password).

Every decision is a Verdict: the policy, each check with its outcome, the signer and version,
and why an image was refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imacpro.files import read_toml, write_toml
from imacpro.errors import UserError
from imacpro.t2.signing import Manifest, Ticket, fingerprint, sha384, verify

POLICIES = ("full", "medium", "none")
EXTERNAL_BOOT = ("disallow", "allow")
NVRAM_FILE = "nvram.toml"
NVRAM_MAC_PURPOSE = "nvram"
POLICY_NAMES = {"full": "Full Security", "medium": "Medium Security", "none": "No Security"}


class NvramTampered(UserError):
    """The NVRAM's authentication failed: edited by hand, or from another chip."""


@dataclass
class Settings:
    policy: str = "full"
    external_boot: str = "disallow"
    highest_version: int = 0     # anti-rollback: the highest version booted under Full
    # The machine's suspended state (suspend.py) carries the same token: a state file is
    # resumable only while the T2 holds its token, so an older one (the machine ran since)
    # is refused. Empty: not suspended.
    suspend_token: str = ""

    def payload(self) -> bytes:
        text = (f"policy={self.policy};external_boot={self.external_boot};"
                f"highest_version={self.highest_version}")
        if self.suspend_token:       # absent when empty: NVRAM written before it still checks
            text += f";suspend_token={self.suspend_token}"
        return text.encode()


class Nvram:
    def __init__(self, directory: Path, sep):
        self.path = directory / NVRAM_FILE
        self.sep = sep

    def load(self) -> Settings:
        if not self.path.exists():
            return Settings()
        try:
            raw = read_toml(self.path)
            settings = Settings(policy=str(raw["policy"]),
                                external_boot=str(raw["external_boot"]),
                                highest_version=int(raw["highest_version"]),
                                suspend_token=str(raw.get("suspend_token", "")))
            tag = bytes.fromhex(raw["mac"])
        except (UserError, KeyError, ValueError, TypeError):
            raise NvramTampered(f"T2 NVRAM {self.path} is damaged: it was modified outside "
                                "the T2") from None
        if (settings.policy not in POLICIES or settings.external_boot not in EXTERNAL_BOOT
                or not self.sep.verify_mac(NVRAM_MAC_PURPOSE, settings.payload(), tag)):
            raise NvramTampered(f"T2 NVRAM {self.path} failed authentication: it was modified "
                                "outside the T2")
        return settings

    def save(self, settings: Settings) -> None:
        write_toml(self.path, {"policy": settings.policy,
                               "external_boot": settings.external_boot,
                               "highest_version": settings.highest_version,
                               "suspend_token": settings.suspend_token,
                               "mac": self.sep.mac(NVRAM_MAC_PURPOSE, settings.payload()).hex()})


@dataclass(frozen=True)
class BootImage:
    kernel: bytes
    initrd: bytes
    cmdline: str
    manifest: Manifest | None = None
    external: bool = False


@dataclass
class Verdict:
    allowed: bool
    policy: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    signer: str | None = None
    version: int | None = None
    reason: str = ""

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, ok, detail))
        if not ok and not self.reason:
            self.reason = f"{name}: {detail}" if detail else name
        return ok

    def render(self) -> str:
        lines = [f"T2 secure boot: {POLICY_NAMES[self.policy]}: "
                 f"{'allowed' if self.allowed else 'REFUSED'}"]
        for name, ok, detail in self.checks:
            lines.append(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
        if self.signer:
            lines.append(f"  signer {self.signer[:16]}…, version {self.version}")
        if not self.allowed:
            lines.append(f"  refused: {self.reason}")
        return "\n".join(lines)


TicketProvider = Callable[[Manifest, int, str], Ticket | None]


def evaluate(image: BootImage, settings: Settings, pinned_key, ecid: int,
             request_ticket: TicketProvider, nonce: str | None = None) -> Verdict:
    """Decide whether `image` may boot. Does not change the settings (see `record_boot`)."""
    verdict = Verdict(allowed=False, policy=settings.policy)
    if image.external and not verdict.check(
            "external boot", settings.external_boot == "allow",
            "allowed" if settings.external_boot == "allow" else
            "booting from external media is disallowed"):
        return verdict
    if settings.policy == "none":
        verdict.check("signature", True, "not checked under No Security")
        verdict.allowed = True
        return verdict

    manifest = image.manifest
    if not verdict.check("manifest", manifest is not None,
                         "present" if manifest else "the boot image is not signed"):
        return verdict
    verdict.signer, verdict.version = manifest.signer, manifest.version
    pinned = fingerprint(pinned_key)
    if not verdict.check("signer", manifest.signer == pinned and
                         verify(pinned_key, manifest.signature, manifest.payload()),
                         "the platform key" if manifest.signer == pinned else
                         f"signed by an unknown key {manifest.signer[:16]}…"):
        return verdict
    for part, data, digest in (("kernel", image.kernel, manifest.kernel_sha384),
                               ("initrd", image.initrd, manifest.initrd_sha384),
                               ("command line", image.cmdline.encode(),
                                manifest.cmdline_sha384)):
        if not verdict.check(f"{part} digest", sha384(data) == digest,
                             "matches" if sha384(data) == digest else
                             f"the {part} differs from the signed one"):
            return verdict

    if settings.policy == "full":
        nonce = nonce or secrets.token_hex(16)
        ticket = request_ticket(manifest, ecid, nonce)
        if not verdict.check("ticket", ticket is not None, "issued" if ticket else
                             "no personalized ticket for this boot"):
            return verdict
        if not verdict.check("ticket signature", ticket.signer == pinned and
                             verify(pinned_key, ticket.signature, ticket.payload()),
                             "valid" if ticket.signer == pinned else "unknown signer"):
            return verdict
        if not verdict.check("ticket manifest", ticket.manifest_digest == manifest.digest(),
                             "this image" if ticket.manifest_digest == manifest.digest()
                             else "the ticket is for another image"):
            return verdict
        if not verdict.check("ticket ECID", ticket.ecid == ecid,
                             f"{ecid:#018x}" if ticket.ecid == ecid else
                             f"issued for another machine (ECID {ticket.ecid:#018x}, this "
                             f"machine is {ecid:#018x})"):
            return verdict
        if not verdict.check("boot nonce", ticket.nonce == nonce,
                             "fresh" if ticket.nonce == nonce else
                             "replayed ticket: issued for an earlier boot"):
            return verdict
        if not verdict.check("anti-rollback", manifest.version >= settings.highest_version,
                             f"version {manifest.version} ≥ {settings.highest_version}"
                             if manifest.version >= settings.highest_version else
                             f"version {manifest.version} is older than version "
                             f"{settings.highest_version} this machine has booted"):
            return verdict
    verdict.allowed = True
    return verdict


def record_boot(nvram: Nvram, settings: Settings, verdict: Verdict) -> None:
    """After an allowed Full Security boot, raise the anti-rollback floor to its version."""
    if verdict.allowed and verdict.policy == "full" and verdict.version is not None \
            and verdict.version > settings.highest_version:
        settings.highest_version = verdict.version
        nvram.save(settings)
