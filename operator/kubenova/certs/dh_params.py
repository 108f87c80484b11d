"""The Diffie-Hellman parameters QEMU's TLS consoles use: RFC 7919's ffdhe2048 group.

QEMU's x509 credentials (libvirt's ``vnc_tls_x509_cert_dir``) read ``dh-params.pem`` from the
host's x509 directory and, when there is none, generate 2048-bit parameters in every QEMU that
starts: measured here, that doubled the CPU a guest's QEMU spends before its start returns
(0.4-0.9 s against 0.35-0.4 s, under TCG), which every start on a busy host waits for. A
named group of RFC 7919 is what TLS 1.3 itself uses (and what RFC 7919 asks servers to prefer
over parameters of their own), so every host writes the same file: a well-known safe prime,
not a secret.
"""

from __future__ import annotations

from typing import Final

#: The file's name in a host's x509 directory (QEMU's QCRYPTO_TLS_CREDS_DH_PARAMS).
DH_PARAMS_FILE: Final = "dh-params.pem"

#: RFC 7919's ffdhe2048 (p and g = 2) as PKCS#3 PEM, the form GnuTLS reads; what
#: ``openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048`` prints.
FFDHE2048_PEM: Final = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
