"""The T2 chip: Secure Enclave keys (sep), secure boot (secure_boot), the SSD's encryption
(storage). No dependency on the CPU code: every part is testable alone.

Files in a machine bundle's `t2/` directory:
    uid              the chip's UID key (32 bytes, 0600); read only by sep.py, never returned
    effaceable       the effaceable key (32 bytes); `imacpro erase` replaces it
    passcode.toml    administrator password verifier and the attempt counter
    nvram.toml       secure-boot settings and anti-rollback version, authenticated
    ssd.meta         the SSD's metadata: owner ECID, capacity, the wrapped media key
    ssd.img          the SSD: a sparse file of AES-XTS ciphertext sectors
Every key a machine keeps is derived from (UID, effaceable key) or wrapped by such a key.
"""
