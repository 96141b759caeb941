"""Seeds derived from the run seed, so that every random draw is a pure function of its inputs.

``derive_seed(purpose, *parts)`` is the first 8 bytes (little-endian) of the BLAKE2b digest of the text
``"purpose:part0:part1:..."``, shifted right by one bit (a non-negative 63-bit integer). The purposes used are
``"shuffle"`` with (seed, epoch) and ``"augment"`` with (seed, epoch, batch index) for tensor datasets or
(seed, epoch, sample index) for imagefolder; methods use their own purposes with parameter names.
"""

from __future__ import annotations

import hashlib


def derive_seed(purpose: str, *parts: int | str) -> int:
    """A 63-bit seed that depends on ``purpose`` and ``parts`` only (stable across runs, platforms and versions)."""
    text = ":".join([purpose, *(part if isinstance(part, str) else str(int(part)) for part in parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
