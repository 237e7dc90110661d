"""The signing server: imacpro's stand-in for Apple's, one per installation.

It holds the platform signing key (Ed25519, created on first use in `$IMACPRO_HOME/keys`) and
  - signs boot image manifests: the SHA-384 digests of kernel, initrd and command line, and a
    version number (what `imacpro sign` writes next to a boot image);
  - issues personalized tickets on request: a signature binding a manifest to one chip's ECID
    and the boot nonce that chip generated for this boot (Full Security).
Every T2 pins the platform public key in its boot ROM when the machine is created.

Manifest file (TOML):
    format = 1
    version = 3
    kernel_sha384 = "…"; initrd_sha384 = "…"; cmdline_sha384 = "…"
    signer = "<SHA-256 fingerprint of the public key>"
    signature = "<Ed25519 signature over the canonical payload, hex>"
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import tomli_w
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from imacpro.files import atomic_write, read_toml, write_toml
from imacpro.errors import UserError

MANIFEST_FORMAT = 1
PRIVATE_KEY_FILE = "platform.key"
PUBLIC_KEY_FILE = "platform.pub"


def sha384(data: bytes) -> str:
    return hashlib.sha384(data).hexdigest()


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise UserError(f"not a public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError("the platform key must be Ed25519")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _canonical(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Manifest:
    version: int
    kernel_sha384: str
    initrd_sha384: str
    cmdline_sha384: str
    signer: str = ""
    signature: str = ""
    format: int = MANIFEST_FORMAT

    def payload(self) -> bytes:
        fields = asdict(self)
        del fields["signature"]
        return _canonical(fields)

    def digest(self) -> str:
        return sha384(self.payload())

    @classmethod
    def describe(cls, kernel: bytes, initrd: bytes, cmdline: str, version: int) -> Manifest:
        return cls(version=version, kernel_sha384=sha384(kernel), initrd_sha384=sha384(initrd),
                   cmdline_sha384=sha384(cmdline.encode()))

    def save(self, path: Path) -> None:
        write_toml(path, asdict(self))

    def to_toml(self) -> str:
        """The manifest file's text, as `save` writes it."""
        return tomli_w.dumps(asdict(self))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.from_fields(read_toml(path), str(path))

    @classmethod
    def from_fields(cls, raw: dict, source: str) -> Manifest:
        """A manifest from its parsed TOML (as `save` writes it); `source` names it in errors."""
        try:
            return cls(**{k: raw[k] for k in ("version", "kernel_sha384", "initrd_sha384",
                                               "cmdline_sha384", "signer", "signature",
                                               "format")})
        except (KeyError, TypeError) as exc:
            raise UserError(f"{source} is not a boot image manifest ({exc!r})") from None


@dataclass(frozen=True)
class Ticket:
    """A personalized ticket: this manifest, for this chip, for this boot only."""

    manifest_digest: str
    ecid: int
    nonce: str
    signer: str
    signature: str

    def payload(self) -> bytes:
        return _canonical({"manifest": self.manifest_digest, "ecid": f"{self.ecid:016X}",
                           "nonce": self.nonce, "signer": self.signer})


def verify(public_key: Ed25519PublicKey, signature_hex: str, payload: bytes) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature_hex), payload)
        return True
    except (InvalidSignature, ValueError):
        return False


class SigningServer:
    def __init__(self, private_key: Ed25519PrivateKey):
        self._key = private_key
        self.public_key = private_key.public_key()
        self.fingerprint = fingerprint(self.public_key)

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> SigningServer:
        """The installation's platform key, made on first use."""
        private_path = keys_dir / PRIVATE_KEY_FILE
        if private_path.exists():
            try:
                key = serialization.load_pem_private_key(private_path.read_bytes(), None)
            except (ValueError, OSError) as exc:
                raise UserError(f"cannot read the platform signing key {private_path}: {exc}") \
                    from None
            if not isinstance(key, Ed25519PrivateKey):
                raise UserError(f"{private_path} is not an Ed25519 key")
            return cls(key)
        keys_dir.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        atomic_write(private_path, pem)
        os.chmod(private_path, 0o600)
        atomic_write(keys_dir / PUBLIC_KEY_FILE, public_pem(key.public_key()))
        return cls(key)

    def sign(self, kernel: bytes, initrd: bytes, cmdline: str, version: int) -> Manifest:
        unsigned = Manifest.describe(kernel, initrd, cmdline, version)
        unsigned = Manifest(**{**asdict(unsigned), "signer": self.fingerprint})
        signature = self._key.sign(unsigned.payload()).hex()
        return Manifest(**{**asdict(unsigned), "signature": signature})

    def personalize(self, manifest: Manifest, ecid: int, nonce: str) -> Ticket:
        """Issue a ticket for `manifest` on the chip `ecid` for the boot with `nonce`."""
        unsigned = Ticket(manifest.digest(), ecid, nonce, self.fingerprint, "")
        return Ticket(unsigned.manifest_digest, ecid, nonce, self.fingerprint,
                      self._key.sign(unsigned.payload()).hex())
