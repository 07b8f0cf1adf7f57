"""Id arrays: many ids held as numpy arrays (no Python object per id), looked up by hash.

What the steps use to know a million ids (the valid leads of a run, the synced plans) within a few
arrays: `KnownIds` for membership and positions, `group_ids` and `earliest_per_id` for the ids that
repeat across chunks.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

# numpy's variable-width text: an id of up to 15 bytes lives inside its 16-byte slot, longer ones in
# one buffer the array owns; no Python object per id. (numpy 2.4's `searchsorted` mixes up two such
# arrays' buffers (numpy#31533): ids are looked up by hash, then compared element-wise.)
ID_DTYPE = np.dtypes.StringDType()


def as_id_array(values: pd.Series | np.ndarray | Iterable[str]) -> np.ndarray:
    """Ids as an `ID_DTYPE` array; a missing id becomes "" (never an id: validation blanks it)."""
    if isinstance(values, np.ndarray) and values.dtype == ID_DTYPE:
        return values
    return _as_objects(values).astype(ID_DTYPE)


def _as_objects(values: pd.Series | np.ndarray | Iterable[str]) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=object, na_value="")
    if isinstance(values, np.ndarray):
        return values.astype(object)
    return np.fromiter(values, dtype=object)


def id_hashes(ids: pd.Series | np.ndarray) -> np.ndarray:
    """A 64-bit hash of each id (uint64; missing as ""): what `KnownIds` and `group_ids` sort by."""
    return pd.util.hash_array(_as_objects(ids), categorize=False)


def group_ids(ids: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """A group number per id (`ID_DTYPE` ids and their `id_hashes`): equal ids, equal numbers.

    Grouped by hash; exact: should two different ids share a hash, the ids themselves are sorted.
    """
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    same_hash = ordered[1:] == ordered[:-1]
    del ordered
    pairs = np.flatnonzero(same_hash)  # duplicates, mostly: only those ids are compared
    if np.any(ids[order[pairs + 1]] != ids[order[pairs]]):
        return np.unique(ids, return_inverse=True)[1]  # a collision: never seen, but exact
    groups = np.empty(len(ids), dtype=np.int64)
    groups[order] = np.cumsum(np.r_[True, ~same_hash]) - 1
    return groups


@dataclass(frozen=True, eq=False)
class KnownIds(Collection[str]):
    """A set of ids held in numpy arrays: what the cross-entity rules look ids up in.

    A million lead ids take ~24 MB here, against ~100 MB as a Python `set` of `str`; and `str`
    objects kept across the chunks of an extract pin the allocator's memory of every chunk they
    came with. Looked up by a 64-bit hash (binary search), confirmed by comparing the ids
    themselves: exact.
    """

    hashes: np.ndarray  # uint64, sorted
    ids: np.ndarray  # `ID_DTYPE`, distinct, in the order of `hashes`
    longest_run: int  # most ids sharing one hash (1 unless two ids collide)

    @classmethod
    def of(cls, ids: KnownIds | pd.Series | np.ndarray | Iterable[str]) -> KnownIds:
        """The distinct ids of `ids` ("" and missing ones left out)."""
        if isinstance(ids, KnownIds):
            return ids
        distinct = np.unique(as_id_array(ids))
        distinct = distinct[distinct != ""]
        return cls.of_distinct(distinct, id_hashes(distinct))

    @classmethod
    def of_distinct(cls, distinct: np.ndarray, hashes: np.ndarray) -> KnownIds:
        """Distinct ids (`ID_DTYPE`, none "") with their `id_hashes`."""
        return cls.indexing(distinct, hashes)[0]

    @classmethod
    def indexing(cls, distinct: np.ndarray, hashes: np.ndarray) -> tuple[KnownIds, np.ndarray]:
        """`of_distinct`, and the order that puts `distinct` in `ids`' order (to align values with them)."""
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
        longest = int(np.diff(np.r_[starts, len(hashes)]).max()) if len(hashes) else 1
        return cls(hashes, distinct[order], longest), order

    def union(self, other: KnownIds | Iterable[str]) -> KnownIds:
        """These ids and `other`'s."""
        return KnownIds.of(np.concatenate([self.ids, KnownIds.of(other).ids]))

    def contains(self, values: pd.Series | np.ndarray, hashes: np.ndarray | None = None) -> np.ndarray:
        """A mask over `values`: True where the value is one of these ids (`hashes`: theirs, if known)."""
        return self.positions(values, hashes) >= 0

    def positions(self, values: pd.Series | np.ndarray, hashes: np.ndarray | None = None) -> np.ndarray:
        """Where each of `values` is in `ids`, -1 where it is not one of these ids (`hashes`: theirs,
        if known)."""
        found = np.full(len(values), -1, dtype=np.int64)
        if not len(self.hashes) or not len(values):
            return found
        if hashes is None:
            values = _as_objects(values)
            hashes = id_hashes(values)
        wanted = as_id_array(values)
        at = np.searchsorted(self.hashes, hashes)
        for step in range(self.longest_run):  # ids sharing a hash sit side by side
            slot = (at + step).clip(max=len(self.hashes) - 1)
            same = (self.hashes[slot] == hashes) & (self.ids[slot] == wanted)
            found[same] = slot[same]
        return found

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and bool(self.contains(np.array([value], dtype=object))[0])

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids.tolist())

    def __len__(self) -> int:
        return len(self.ids)


def earliest_per_id(ids: np.ndarray, hashes: np.ndarray, values: np.ndarray) -> tuple[KnownIds, np.ndarray]:
    """The smallest of `values` per id (ids may repeat), as the distinct ids and, aligned with
    `KnownIds.ids`, each one's smallest value."""
    groups = group_ids(ids, hashes)
    order = np.lexsort((values, groups))
    first = order[np.r_[True, groups[order][1:] != groups[order][:-1]]] if len(order) else order
    known, by_hash = KnownIds.indexing(ids[first], hashes[first])
    return known, values[first][by_hash]
