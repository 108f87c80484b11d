"""The Diffie-Hellman group written into hosts' x509 directories is RFC 7919's ffdhe2048."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from kubenova.certs import dh_params

ALL_ONES_64 = (1 << 64) - 1


def pkcs3_numbers(pem: bytes) -> tuple[int, int]:
    """p and g of PKCS#3 DH parameters in PEM: SEQUENCE { INTEGER p, INTEGER g } in DER.
    (Read by hand: the cryptography package deprecates finite-field DH, QEMU does not.)"""
    lines = pem.decode().strip().splitlines()
    assert (lines[0], lines[-1]) == ("-----BEGIN DH PARAMETERS-----", "-----END DH PARAMETERS-----")
    der = base64.b64decode("".join(lines[1:-1]))
    assert der[:2] == b"\x30\x82"  # a SEQUENCE with a two-byte length
    assert int.from_bytes(der[2:4]) == len(der) - 4
    integers, rest = [], der[4:]
    while rest:
        assert rest[0] == 0x02  # INTEGER
        if rest[1] & 0x80:
            size_bytes = rest[1] & 0x7F
            size, start = int.from_bytes(rest[2 : 2 + size_bytes]), 2 + size_bytes
        else:
            size, start = rest[1], 2
        integers.append(int.from_bytes(rest[start : start + size]))
        rest = rest[start + size :]
    p, g = integers
    return p, g


def test_it_is_a_2048_bit_group_with_generator_2_built_as_rfc_7919_builds_it() -> None:
    p, g = pkcs3_numbers(dh_params.FFDHE2048_PEM)
    assert g == 2
    assert p.bit_length() == 2048
    # RFC 7919's primes are 2^n - 2^(n-64) + {[2^(n-130) e] + X} * 2^64 - 1: their top and
    # bottom 64 bits are all ones.
    assert p >> (2048 - 64) == ALL_ONES_64
    assert p & ALL_ONES_64 == ALL_ONES_64
    # A safe prime: p and (p - 1) / 2 pass Fermat's test to a few bases.
    for n in (p, (p - 1) // 2):
        assert all(pow(base, n - 1, n) == 1 for base in (2, 3, 5, 7))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command here")
def test_it_is_the_group_openssl_knows_by_that_name() -> None:
    named = subprocess.run(
        ["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048"],
        check=True,
        capture_output=True,
    ).stdout
    assert named == dh_params.FFDHE2048_PEM
