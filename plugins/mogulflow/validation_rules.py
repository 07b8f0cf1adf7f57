"""The validation rules of each entity (the contract's "Validation" section), as vectorised tests.

`mogulflow.validate` runs them: with pandera, over one chunk of an extract at a time. Every rule
here is row-local (the cross-entity ones given the `KnownIds` they close over).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import email_validator
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pycountry

from mogulflow.model import RuleKind
from mogulflow.source_tables import CONVERSIONS, INTERVAL_UNITS, LEADS, PLANS, TRIALS, SourceTable

CLOCK_SKEW = timedelta(minutes=5)
COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)
CURRENCY_CODES = frozenset(currency.alpha_3 for currency in pycountry.currencies)

PRESENT = "must be present"
IN_FUTURE = "must not be in the future"


@dataclass(frozen=True)
class Rule:
    """One validation rule: a vectorised test and how its failure reads in a reject reason.

    `test` gets the column (or, for a `row_level` rule, the whole frame) and returns a boolean
    Series, True where the row passes. Column tests never see missing values (pandera drops them
    first); row-level tests must let rows with missing values pass, `PRESENT` reports those.
    """

    field: str
    words: str
    test: Callable[[pd.Series | pd.DataFrame], pd.Series]
    row_level: bool = False
    kind: RuleKind = RuleKind.INVALID

    @property
    def name(self) -> str:
        return f"{self.field}: {self.words}"

    def to_check(self) -> pa.Check:
        return pa.Check(self.test, name=self.name, error=self.name)


def lead_rules(now: datetime) -> list[Rule]:
    """The rules of `leads` rows (see the contract's rules for leads)."""
    return [
        Rule("email", "must be a valid email address", is_valid_email),
        Rule("country", "must be an ISO 3166-1 alpha-2 country code", _is_in(COUNTRY_CODES)),
        Rule(
            "lead_created_at",
            "must not be after free_trial_started_at",
            _not_after("lead_created_at", "free_trial_started_at"),
            row_level=True,
        ),
        *_not_in_future(LEADS, now),
    ]


def plan_rules(now: datetime) -> list[Rule]:
    """The rules of `plans` rows (see the contract's rules for plans)."""
    return [
        Rule("interval_count", "must be at least 1", lambda s: s >= 1),
        Rule("interval_unit", f"must be one of {', '.join(INTERVAL_UNITS)}", _is_in(INTERVAL_UNITS)),
        *_not_in_future(PLANS, now),
    ]


def trial_rules(
    now: datetime, *, known_lead_ids: Collection[str], known_plan_ids: Collection[str]
) -> list[Rule]:
    """The rules of `trials` rows; `known_*_ids`: valid in this run together with those synced before."""
    return [
        Rule(
            "lead_id",
            "must name a lead that is valid or was synced before",
            _is_in(known_lead_ids),
            kind=RuleKind.UNKNOWN_PARENT,
        ),
        Rule(
            "plan_id",
            "must name a plan that is valid or was synced before",
            _is_in(known_plan_ids),
            kind=RuleKind.UNKNOWN_PARENT,
        ),
        Rule("ends_at", "must be after started_at", _after("ends_at", "started_at"), row_level=True),
        Rule("amount_in_cents", "must not be negative", lambda s: s >= 0),
        Rule("currency", "must be an ISO 4217 currency code", _is_in(CURRENCY_CODES)),
        Rule("quantity", "must be at least 1", lambda s: s >= 1),
        *_not_in_future(TRIALS, now),
    ]


def conversion_rules(now: datetime, *, known_lead_ids: Collection[str]) -> list[Rule]:
    """The rules of `conversions` rows; `known_lead_ids`: leads valid in this run or synced before."""
    return [
        Rule(
            "lead_id",
            "must name a lead mogulflow has synced",
            _is_in(known_lead_ids),
            kind=RuleKind.UNKNOWN_PARENT,
        ),
        *_not_in_future(CONVERSIONS, now),
    ]


# --- known ids -----------------------------------------------------------------------------------

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


# --- rules ---------------------------------------------------------------------------------------


def _is_in(allowed: Collection[str]) -> Callable[[pd.Series], pd.Series]:
    # Sorted once, looked up by binary search per chunk (as fast as a hash index built once, at a
    # fraction of its memory); `Series.isin` would hash a million known ids again for every chunk.
    known = KnownIds.of(allowed)
    return lambda s: pd.Series(known.contains(s), index=s.index)


def _after(field: str, other: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df[field].isna() | df[other].isna() | (df[field] > df[other])


def _not_after(field: str, other: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df[field].isna() | df[other].isna() | (df[field] <= df[other])


def _not_in_future(table: SourceTable, now: datetime) -> list[Rule]:
    latest = _utc(now) + CLOCK_SKEW
    return [Rule(column, IN_FUTURE, lambda s: s <= latest) for column in table.timestamps]


# Addresses of this common shape are all accepted by email-validator (see tests): dot-atom local part
# of at most 64 characters, dotted domain of letters/digits/inner hyphens, labels of at most 63
# characters, an alphabetic top-level domain that is not a special-use one, 254 characters in all.
# Everything else is asked to email-validator itself, once per distinct value.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_COMMON_EMAIL = (
    r"(?=.{1,254}$)(?=[^@]{1,64}@)(?!.*@.*[^.@]{64})"
    rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
    r"@(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)+"
    rf"(?!(?:{'|'.join(email_validator.SPECIAL_USE_DOMAIN_NAMES)})$)[A-Za-z]{{2,63}}"
)
COMMON_EMAIL = re.compile(_COMMON_EMAIL, re.IGNORECASE)


def is_valid_email(emails: pd.Series) -> pd.Series:
    """True where the address is valid (email-validator, no deliverability check); vectorised."""
    valid = emails.str.fullmatch(COMMON_EMAIL).fillna(False).astype(bool)
    unusual = emails[~valid]
    if len(unusual):
        valid.loc[unusual.index] = unusual.map(_is_valid_email_address).astype(bool)
    return valid


@functools.lru_cache(maxsize=65536)
def _is_valid_email_address(address: str) -> bool:
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
