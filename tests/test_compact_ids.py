"""Ids held in numpy arrays instead of Python sets: the same answers as a set, across chunks too."""

from __future__ import annotations

import random
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from builders import NOW, frame, lead, trial

from mogulflow.extract.source_tables import LEADS, SOURCE_TABLES
from mogulflow.load.entity_step import StepInputs
from mogulflow.sync import leads_trials as sync
from mogulflow.validate.validator import lead_rules, trial_rules, validate_into
from mogulflow.values.entities import Entity
from mogulflow.values.id_arrays import KnownIds, as_id_array, earliest_per_id, group_ids, id_hashes
from mogulflow.values.run_settings import resolve_settings
from mogulflow.values.step_reports import ExtractReport, StagedExtract
from mogulflow.warehouse import staging
from mogulflow.warehouse.part_stores import ObjectStoreParts
from mogulflow.warehouse.sync_state import HeldState

T = datetime.fromisoformat


def random_ids(count: int, seed: int) -> list[str]:
    """Short, long (past the 15 bytes numpy keeps inline) and non-ASCII ids."""
    rng = random.Random(seed)
    alphabet = "abcXYZ019_-éß€🙂"
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 5, 12, 16, 40]))) for _ in range(count)
    ]


def test_known_ids_answer_membership_as_a_set_does():
    known = set(random_ids(2000, seed=1))
    asked = random_ids(2000, seed=2) + list(known)[:500]

    ids = KnownIds.of(known)

    assert ids.contains(pd.Series(asked)).tolist() == [value in known for value in asked]
    assert len(ids) == len(known)
    assert set(ids) == known


def test_known_ids_union_holds_both_sides():
    ids = KnownIds.of({"L1", "L2"}).union({"L2", "lead-with-a-rather-long-id"})

    assert sorted(ids) == ["L1", "L2", "lead-with-a-rather-long-id"]
    assert "L1" in ids and "L3" not in ids


def test_ids_sharing_a_hash_are_still_told_apart():
    ids = as_id_array(np.array(["alpha", "beta-with-a-long-tail", "alpha", "gamma"], dtype=object))
    same_hash = np.zeros(len(ids), dtype=np.uint64)

    groups = group_ids(ids, same_hash)
    known = KnownIds.of_distinct(ids[[0, 1]], same_hash[:2])

    assert groups[0] == groups[2] and len({groups[0], groups[1], groups[3]}) == 3
    asked = pd.Series(["alpha", "beta-with-a-long-tail", "gamma"])
    assert known.positions(asked, np.zeros(3, dtype=np.uint64)).tolist()[2] == -1
    assert known.contains(asked, np.zeros(3, dtype=np.uint64)).tolist() == [True, True, False]


def test_group_ids_gives_equal_ids_equal_groups():
    values = np.array(random_ids(3000, seed=3) * 2, dtype=object)
    ids = as_id_array(values)

    groups = group_ids(ids, id_hashes(values))

    _, expected = np.unique(values.astype(str), return_inverse=True)
    pairs = set(zip(groups.tolist(), expected.tolist(), strict=True))
    assert len(pairs) == len(set(groups.tolist())) == len(set(expected.tolist()))


def test_earliest_per_id_keeps_each_ids_smallest_value_whatever_the_order():
    rng = random.Random(11)
    names = random_ids(500, seed=5)
    rows = [(name, rng.randrange(10_000)) for name in names for _ in range(rng.randrange(1, 4))]
    rng.shuffle(rows)
    values = np.array([name for name, _ in rows], dtype=object)

    known, earliest = earliest_per_id(
        as_id_array(values), id_hashes(values), np.array([value for _, value in rows], dtype=np.int64)
    )

    expected: dict[str, int] = {}
    for name, value in rows:
        expected[name] = min(value, expected.get(name, value))
    assert dict(zip(known.ids.tolist(), earliest.tolist(), strict=True)) == expected


def test_earliest_per_id_of_nothing_is_empty():
    known, earliest = earliest_per_id(as_id_array([]), id_hashes(np.array([], dtype=object)), np.array([]))

    assert len(known) == 0 and len(earliest) == 0


def staged(tmp_path, entity: Entity, chunks: list[pd.DataFrame], rules) -> StagedExtract:
    """Validate `chunks` into staged Parquet parts (one per chunk), as `extract_and_validate` does."""
    run = staging.RunStaging(ObjectStoreParts(tmp_path.as_uri()), "dag", "run")
    parts = run.valid_parts(entity)
    found = validate_into(iter(chunks), SOURCE_TABLES[entity], rules, parts)
    return run.stage_rejects(entity, found.rejected, found.extracted, found.valid, parts.finish())


def test_a_leads_trials_in_different_staged_parts_date_it_by_the_earliest(tmp_path):
    undated = {"lead_created_at": None, "free_trial_started_at": None}
    leads = [frame(lead("L1", **undated), lead("L2", **undated)), frame(lead("L3", **undated))]
    trials = [
        frame(trial("T1", lead_id="L1", started_at=T("2025-03-12 09:00"))),
        frame(trial("T2", lead_id="L2", started_at=T("2025-03-11 09:00"))),
        frame(trial("T3", lead_id="L1", started_at=T("2025-03-10 09:00"))),
    ]
    extract = ExtractReport(
        {
            Entity.LEAD: staged(tmp_path, Entity.LEAD, leads, lead_rules(NOW)),
            Entity.TRIAL: staged(
                tmp_path,
                Entity.TRIAL,
                trials,
                trial_rules(NOW, known_lead_ids={"L1", "L2", "L3"}, known_plan_ids={"P1"}),
            ),
        }
    )
    settings = resolve_settings(
        {"full_refresh": True}, run_id="r", dag_id="d", data_interval_start=None, data_interval_end=None
    )

    planned = sync.CUSTOMERS.plan(StepInputs(None, None, settings, None, extract), HeldState({}))

    dates = {c.payload.external_id: c.payload.lead_created_at for c in planned.plan.creates}
    assert dates == {"L1": T("2025-03-10 09:00+00:00"), "L2": T("2025-03-11 09:00+00:00"), "L3": None}


@pytest.mark.parametrize("chunk_rows", [1, 3, 7])
def test_validation_in_chunks_of_any_size_gives_what_one_chunk_gives(chunk_rows):
    rows = [lead(f"L{i % 7}", updated_at=T(f"2025-03-0{1 + i % 5} 10:00")) for i in range(20)]
    rows += [lead(None), lead("  "), lead("L-long-enough-to-leave-numpy-inline-storage", email="x@")]
    rows += [lead("L-long-enough-to-leave-numpy-inline-storage")]
    whole = frame(*rows)
    chunks = [whole.iloc[i : i + chunk_rows] for i in range(0, len(whole), chunk_rows)]

    chunked = validate_into(iter(chunks), LEADS, lead_rules(NOW), Parts())
    at_once = validate_into(whole, LEADS, lead_rules(NOW), Parts())

    assert chunked.rejected == at_once.rejected
    assert (
        set(chunked.valid_ids())
        == set(at_once.valid_ids())
        == {
            *(f"L{i}" for i in range(7)),
            "L-long-enough-to-leave-numpy-inline-storage",
        }
    )
    assert sum(r.source_id is None for r in chunked.rejected) == 2


class Parts:
    """A sink that keeps the valid parts in memory."""

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []

    def append(self, frame: pd.DataFrame) -> None:
        self.parts.append(frame)

    def drop(self, part: int, rows: np.ndarray) -> None:
        self.parts[part] = self.parts[part].drop(index=rows).reset_index(drop=True)
