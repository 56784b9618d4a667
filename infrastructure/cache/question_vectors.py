"""The answer cache's semantic index: question vectors in Redis, mirrored in each process.

One Redis list per organisation, corpus version and vector dimension holds a random
header, then one entry per cached question: its 32-character digest followed by its
unit vector (float32). Entries are only ever appended, up to a bound, and the list
expires as a whole, one TTL after it was created: every answer it points at was stored
later with the same TTL, so none expires before the list. (Were each store to push the
list's expiry on, a busy organisation's full list would outlive its answers for good
and every similar question would miss.) A list created again after expiring gets a new
header, and fills again.

Each process keeps a copy of the lists it has read (bounded in bytes, least recently
used dropped first) and asks Redis only for what it has not seen yet: the header, and
the entries past its copy's end, or every entry when the header is not the one it
holds. A lookup then costs one round trip and a matrix product over the copy, instead
of transferring and decoding every vector (about 2.9 ms of CPU and 400 KB per lookup
at 256 questions).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

import numpy as np
from numpy.typing import NDArray
from redis.asyncio import Redis

DIGEST_CHARS = 32
# What a copy spends per digest besides its row: a 32-character str and its list slot.
_DIGEST_BYTES = 89
Vectors = NDArray[np.float32]

# KEYS[1]: the answer's key, KEYS[2]: the list.
# ARGV: the answer, the list entry, TTL seconds, most entries, a header for a new list.
_STORE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
local length = redis.call('LLEN', KEYS[2])
if length == 0 then
  redis.call('RPUSH', KEYS[2], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  length = 1
end
if length - 1 < tonumber(ARGV[4]) then
  redis.call('RPUSH', KEYS[2], ARGV[2])
end
return length
"""

# KEYS[1]: the list. ARGV: the header the caller's copy has, the first index it lacks.
# Returns the header then the entries the caller lacks (all of them for another header),
# or nothing when there is no list.
_READ = """
local header = redis.call('LINDEX', KEYS[1], 0)
if not header then
  return {}
end
local start = 1
if header == ARGV[1] then
  start = tonumber(ARGV[2])
end
local entries = redis.call('LRANGE', KEYS[1], start, -1)
table.insert(entries, 1, header)
return entries
"""


class _Copy:
    """This process's copy of one list: its header, and its entries as digests and rows."""

    def __init__(self, header: bytes, dimension: int) -> None:
        self.header = header
        self.dimension = dimension
        self.digests: list[str] = []
        self.rows: Vectors = np.empty((0, dimension), dtype=np.float32)
        # The list index of the first entry this copy lacks (the header is index 0).
        # Counted apart from the digests: an entry of the wrong size is read, not kept.
        self.next_index = 1

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes) + len(self.digests) * _DIGEST_BYTES

    def extend(self, entries: list[bytes]) -> None:
        self.next_index += len(entries)
        width = DIGEST_CHARS + 4 * self.dimension
        fitting = [entry for entry in entries if len(entry) == width]
        if not fitting:
            return
        self.digests += [entry[:DIGEST_CHARS].decode("ascii") for entry in fitting]
        packed = b"".join(entry[DIGEST_CHARS:] for entry in fitting)
        added = np.frombuffer(packed, dtype=np.float32).reshape(len(fitting), self.dimension)
        self.rows = np.concatenate((self.rows, added))

    def closest(self, query: Vectors) -> tuple[str, float] | None:
        if not self.digests:
            return None
        similarities = self.rows @ query
        best = int(np.argmax(similarities))
        return self.digests[best], float(similarities[best])


class QuestionVectors:
    """The lists in Redis, and this process's copies of them (at most ``copy_bytes``)."""

    def __init__(
        self, redis: Redis, *, ttl_seconds: int, max_entries: int, copy_bytes: int
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._copy_bytes = copy_bytes
        self._copies: OrderedDict[str, _Copy] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._held = 0
        self._store = redis.register_script(_STORE)
        self._read = redis.register_script(_READ)

    @property
    def held_bytes(self) -> int:
        return self._held

    async def add(
        self, key: str, digest: str, vector: Vectors, *, answer_key: str, answer: str
    ) -> None:
        """Store ``answer`` under ``answer_key`` (both expire) and its question, unless the
        list ``key`` is full."""
        if len(digest) != DIGEST_CHARS:
            raise ValueError(f"a question digest has {DIGEST_CHARS} characters")
        entry = digest.encode("ascii") + vector.astype(np.float32).tobytes()
        header = secrets.token_hex(16)
        await self._store(
            keys=[answer_key, key], args=[answer, entry, self._ttl, self._max_entries, header]
        )

    async def closest(self, key: str, query: Vectors) -> tuple[str, float] | None:
        """The digest of the question closest to ``query`` in list ``key``, and its cosine."""
        copy = self._copies.get(key)
        header, start = (copy.header, copy.next_index) if copy is not None else (b"", 1)
        reply: list[bytes] = await self._read(keys=[key], args=[header, start])
        if not reply:
            self._drop(key)
            return None
        if copy is None or reply[0] != copy.header:
            copy = _Copy(reply[0], len(query))
            entries = reply[1:]
        else:
            # Other lookups may have extended this copy while the reply was on its way.
            entries = reply[1 + copy.next_index - start :]
        copy.extend(entries)
        self._keep(key, copy)
        return copy.closest(query)

    def _keep(self, key: str, copy: _Copy) -> None:
        self._drop(key)
        size = copy.nbytes
        if size > self._copy_bytes:
            return
        self._copies[key] = copy
        self._sizes[key] = size
        self._held += size
        while self._held > self._copy_bytes:
            old, _ = self._copies.popitem(last=False)
            self._held -= self._sizes.pop(old)

    def _drop(self, key: str) -> None:
        if self._copies.pop(key, None) is not None:
            self._held -= self._sizes.pop(key)
