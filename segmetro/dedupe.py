"""Transaction ids produced twice in one run, found in bounded memory.

Metronome keeps the first event of each ``transaction_id`` and silently drops the rest. A run that
produces an id twice either repeats itself (the same event: counted and not sent again) or
conflicts (different content under one id: only the first would be billed, so the second is
rejected, naming where the first came from).

The table is open addressing with double hashing over two flat arrays of 64-bit words, 16 bytes a
slot: the id's 64-bit hash, and the content's 24-bit hash with a 40-bit "place" (the record's line
counted across the run, turned back into ``file:line`` when a conflict is reported). Past 2^18
slots the load stays between 0.68 and 0.9 (a prime capacity, grown by a third), so the table costs
18 to 24 bytes per distinct id (``benchmarks/bench.py`` reports the figure at 5 million ids); a
Python set of the strings alone takes over 100. A run sizes its table ahead from a guess at its
events (``sources.expected_events``), which costs more per id only where the guess is high.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right

MAX_LOAD = 0.9
GROWTH = 1.33
SMALL = 1 << 18  # below this many slots (4 MiB) the table doubles: cheaper to grow
PRESIZE_LIMIT = 1 << 23  # the most slots (128 MiB) made before any id is seen; past it, grown
_MASK64 = (1 << 64) - 1
_PLACE_BITS = 40
_PLACE_MASK = (1 << _PLACE_BITS) - 1
_CONTENT_MASK = (1 << 24) - 1


def _span_of(name: str) -> int:
    """More than the lines ``name`` can hold: one a byte (stdin and the unknown: 2^32)."""
    try:
        return os.path.getsize(name) + 2
    except OSError:
        return 1 << 32


def _is_prime(n: int) -> bool:
    if n < 4:
        return n > 1
    if n % 2 == 0:
        return False
    divisor = 3
    while divisor * divisor <= n:
        if n % divisor == 0:
            return False
        divisor += 2
    return True


def _prime_at_least(n: int) -> int:
    n |= 1
    while not _is_prime(n):
        n += 2
    return n


class SeenIds:
    """``check(txid, content)`` answers NEW, SAME (an exact repeat) or the first occurrence's
    ``file:line`` (a conflict)."""

    NEW = 0
    SAME = 1

    def __init__(self, capacity: int = 1021):
        self._size(_prime_at_least(capacity))
        self.count = 0
        self._files: list[str] = []  # file names in order of first appearance
        self._bases: list[int] = []  # the place of line 0 of each file
        self._file = None
        self._base = 0
        self._span = 0

    def _size(self, capacity: int) -> None:
        self._capacity = capacity
        self._keys = array("Q", [0]) * capacity
        self._values = array("Q", [0]) * capacity
        self._limit = int(capacity * MAX_LOAD)

    @property
    def bytes_used(self) -> int:
        return self._capacity * 16

    def place(self, file: str, line: int) -> int:
        """A run-wide number for ``file:line``. Files arrive one after another, each numbered
        after the lines the previous one can have (its size in bytes bounds them)."""
        if file != self._file:
            if self._file is not None:
                self._base += self._span
            self._file = file
            self._files.append(file)
            self._bases.append(self._base)
            self._span = _span_of(file)
        return (self._base + line) & _PLACE_MASK

    def where(self, place: int) -> str:
        index = bisect_right(self._bases, place) - 1
        if index < 0:
            return "?"
        return f"{self._files[index]}:{place - self._bases[index]}"

    def check(self, txid: str, content: bytes, place: int, _mask: int = _MASK64,
              _content: int = _CONTENT_MASK, _bits: int = _PLACE_BITS) -> int | str:
        key = hash(txid) & _mask or 1
        value = ((hash(content) & _content) << _bits) | place
        keys = self._keys
        capacity = self._capacity
        slot = key % capacity
        step = 0
        while True:
            found = keys[slot]
            if found == 0:
                break
            if found == key:
                stored = self._values[slot]
                if stored >> _bits == value >> _bits:
                    return self.SAME
                return self.where(stored & _PLACE_MASK)
            if not step:
                step = 1 + (key >> 20) % (capacity - 1)
            slot = (slot + step) % capacity
        keys[slot] = key
        self._values[slot] = value
        self.count += 1
        if self.count > self._limit:
            self._grow()
        return self.NEW

    def check_many(self, txids: list[str], contents: list[bytes], base: int, lines: list[int]
                   ) -> dict[int, int | str]:
        """``check`` of each id in turn, the n-th at ``base + lines[n]``: the answers that are
        not NEW, by index (most often none)."""
        odd: dict[int, int | str] = {}
        keys, values, capacity = self._keys, self._values, self._capacity
        room = self._limit - self.count
        for index, txid in enumerate(txids):
            key = hash(txid) & _MASK64 or 1
            slot = key % capacity
            found = keys[slot]
            if found and found != key:  # probe on (as ``check``) to an empty slot or the id
                step = 1 + (key >> 20) % (capacity - 1)
                while True:
                    slot = (slot + step) % capacity
                    found = keys[slot]
                    if found == 0 or found == key:
                        break
            if found == 0 and room > 0:  # a new id, inline (the usual case)
                keys[slot] = key
                values[slot] = ((hash(contents[index]) & _CONTENT_MASK) << _PLACE_BITS) | \
                    ((base + lines[index]) & _PLACE_MASK)
                room -= 1
                continue
            # seen before, or the table is full: ``check`` answers (and grows the table)
            self.count = self._limit - room
            answer = self.check(txid, contents[index], (base + lines[index]) & _PLACE_MASK)
            keys, values, capacity = self._keys, self._values, self._capacity  # it may grow
            room = self._limit - self.count
            if answer != 0:
                odd[index] = answer
        self.count = self._limit - room
        return odd

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        factor = 2 if self._capacity < SMALL else GROWTH
        self._size(_prime_at_least(int(self._capacity * factor)))
        keys, values, capacity = self._keys, self._values, self._capacity
        for key, value in zip(old_keys, old_values):
            if key:
                slot = key % capacity
                if keys[slot]:
                    step = 1 + (key >> 20) % (capacity - 1)
                    slot = (slot + step) % capacity
                    while keys[slot]:
                        slot = (slot + step) % capacity
                keys[slot] = key
                values[slot] = value
