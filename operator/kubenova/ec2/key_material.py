"""The cryptography of EC2 key pairs: making one, reading an imported public key, and the
fingerprints EC2 shows for each.

EC2 computes a key's fingerprint three ways, and tools compare against them (the console, ``aws
ec2 describe-key-pairs``, AWS's own instructions for checking a key with ``openssl``):

- a key pair EC2 made, RSA: the SHA-1 of the private key in PKCS#8 DER, as colon hex;
- an imported RSA key: the MD5 of the public key's DER SubjectPublicKeyInfo, as colon hex;
- ed25519, made or imported: the base64 SHA-256 of the OpenSSH key blob, as ``ssh-keygen -l``
  prints it without its ``SHA256:`` prefix.

All key work is ``cryptography``'s; nothing here keeps a private key: EC2 gives it out once.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

RSA = "rsa"
ED25519 = "ed25519"
KEY_TYPES = (RSA, ED25519)
#: The size of an RSA key made here (EC2's), and the least an imported RSA key may have.
RSA_BITS = 2048
#: The longest public key accepted for import: the Instance's ``spec.sshAuthorizedKeys`` holds
#: lines of up to 8192 characters.
MAX_PUBLIC_KEY = 8192


class KeyFormatError(ValueError):
    """The offered public key is not one EC2 would import; the message says why."""


@dataclasses.dataclass(frozen=True)
class PublicKey:
    key_type: str
    #: The OpenSSH public key line without a comment (``ssh-ed25519 AAAA…``).
    openssh: str
    fingerprint: str


@dataclasses.dataclass(frozen=True)
class NewKeyPair:
    public: PublicKey
    #: The private key in PEM, as EC2 hands it out: RSA as ``BEGIN RSA PRIVATE KEY``
    #: (traditional OpenSSL), ed25519 in OpenSSH's own format.
    private_pem: str = dataclasses.field(repr=False)


def create(key_type: str) -> NewKeyPair:
    """A new key pair of ``key_type`` (one of :data:`KEY_TYPES`)."""
    if key_type == RSA:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pkcs8 = rsa_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pem = rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        line = _openssh_line(rsa_key.public_key())
        fingerprint = _colon_hex(hashlib.sha1(pkcs8).digest())
        return NewKeyPair(PublicKey(RSA, line, fingerprint), pem.decode())
    if key_type == ED25519:
        ed_key = ed25519.Ed25519PrivateKey.generate()
        pem = ed_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        line = _openssh_line(ed_key.public_key())
        return NewKeyPair(PublicKey(ED25519, line, _sha256_of_blob(line)), pem.decode())
    raise ValueError(f"unknown key type {key_type!r}")


def import_openssh(material: bytes) -> PublicKey:
    """The public key of an OpenSSH public key line (``ssh-rsa AAAA… comment``), as
    ImportKeyPair takes it; :class:`KeyFormatError` for anything else."""
    if len(material) > MAX_PUBLIC_KEY:
        raise KeyFormatError(f"the key is longer than {MAX_PUBLIC_KEY} bytes")
    try:
        text = material.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KeyFormatError("the key is not an OpenSSH public key line (not ASCII)") from None
    if "\n" in text or "\r" in text:
        raise KeyFormatError("the key must be one OpenSSH public key line")
    try:
        loaded = serialization.load_ssh_public_key(text.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"the key is not an OpenSSH public key line ({exc})") from None
    if isinstance(loaded, rsa.RSAPublicKey):
        if loaded.key_size < RSA_BITS:
            raise KeyFormatError(
                f"an RSA key must have at least {RSA_BITS} bits, this one has {loaded.key_size}"
            )
        spki = loaded.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return PublicKey(RSA, _openssh_line(loaded), _colon_hex(hashlib.md5(spki).digest()))
    if isinstance(loaded, ed25519.Ed25519PublicKey):
        line = _openssh_line(loaded)
        return PublicKey(ED25519, line, _sha256_of_blob(line))
    raise KeyFormatError("only rsa and ed25519 keys can be imported")


def authorized_key(public_openssh: str, key_name: str) -> str:
    """The line for the guest's authorized keys: the key, and its name as the comment (so
    ``~/.ssh/authorized_keys`` says which EC2 key pair it came from)."""
    comment = "".join(char for char in key_name if char.isprintable())
    return f"{public_openssh} {comment}".rstrip()


def _openssh_line(public: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in digest)


def _sha256_of_blob(openssh_line: str) -> str:
    blob = base64.b64decode(openssh_line.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
