"""A deterministic sample warehouse: `mogulflow sample-warehouse PATH [--seed 7] [--leads N] [--attributes]`.

Builds the four source tables of the contract in a DuckDB file: realistic leads (companies from
Faker, emails on the company's domain, addresses), about thirty plans, trials for most leads (a few
paid, most free), conversions to a billing system, and a few rows that break each validation rule.
Every timestamp lies in 2025 (between `SAMPLE_START` and `SAMPLE_END`), except the deliberately
future ones (2099). The same seed gives the same rows, in the same order.

The broken rows stay under ~4% of each entity so a default run (max_reject_ratio 0.05) passes; the
plans hold exactly one bad plan. `SampleStats` says how many rows each table holds and which
rejects the validators should find, rule by rule.

Large samples are built from pools of Faker words combined with numpy, not one Faker call per row:
a million leads take seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from faker import Faker

from mogulflow.values.entities import Entity
from mogulflow.warehouse.sql_files import read_sql
from mogulflow_demo.sample_attributes import ATTRIBUTE_TABLES, build_attribute_frames, write_attribute_tables

SAMPLE_START = pd.Timestamp("2025-01-01")
SAMPLE_END = pd.Timestamp("2025-10-31")
FUTURE = pd.Timestamp("2099-01-01")
MIN_LEADS = 1000  # below this, one broken row per rule would push an entity past 4% rejects
BROKEN_SHARE = 0.025  # of each entity's rows, spread evenly over the rules that entity can break
TABLES = ("leads", "plans", "trials", "conversions")
TABLE_ENTITIES = (Entity.LEAD, Entity.PLAN, Entity.TRIAL, Entity.CONVERSION)

# country → (Faker locale, e-mail top-level domain, currency, [(state, city, zip), ...])
COUNTRIES: dict[str, tuple[str, str, str, list[tuple[str | None, str, str]]]] = {
    "US": (
        "en_US",
        "com",
        "USD",
        [
            ("CA", "San Francisco", "94107"),
            ("NY", "New York", "10001"),
            ("TX", "Austin", "78701"),
            ("WA", "Seattle", "98101"),
            ("MA", "Boston", "02108"),
            ("IL", "Chicago", "60601"),
            ("CO", "Denver", "80202"),
        ],
    ),
    "GB": ("en_GB", "co.uk", "GBP", [(None, "London", "EC1A 1BB"), (None, "Manchester", "M1 1AE")]),
    "DE": (
        "de_DE",
        "de",
        "EUR",
        [("BE", "Berlin", "10115"), ("BY", "Munich", "80331"), ("HH", "Hamburg", "20095")],
    ),
    "FR": ("fr_FR", "fr", "EUR", [(None, "Paris", "75001"), (None, "Lyon", "69001")]),
    "CA": ("en_CA", "ca", "USD", [("ON", "Toronto", "M5H 2N2"), ("BC", "Vancouver", "V5K 0A1")]),
    "AU": ("en_AU", "com.au", "USD", [("NSW", "Sydney", "2000"), ("VIC", "Melbourne", "3000")]),
    "NL": ("nl_NL", "nl", "EUR", [(None, "Amsterdam", "1012 JS"), (None, "Rotterdam", "3011 AD")]),
    "ES": ("es_ES", "es", "EUR", [(None, "Madrid", "28001"), (None, "Barcelona", "08001")]),
    "IT": ("it_IT", "it", "EUR", [(None, "Milan", "20121"), (None, "Rome", "00184")]),
    "SE": ("sv_SE", "se", "EUR", [(None, "Stockholm", "111 20")]),
    "BR": ("pt_BR", "com.br", "USD", [("SP", "São Paulo", "01000-000")]),
    "IN": ("en_IN", "in", "USD", [("KA", "Bengaluru", "560001"), ("MH", "Mumbai", "400001")]),
}
COUNTRY_WEIGHTS = [0.40, 0.12, 0.10, 0.07, 0.06, 0.05, 0.05, 0.04, 0.04, 0.03, 0.02, 0.02]

TIERS = ["starter", "basic", "team", "pro", "business", "growth", "scale", "premium", "enterprise"]
INTERVALS = [("monthly", 1, "month"), ("quarterly", 3, "month"), ("yearly", 1, "year")]
EXTRA_PLANS = [("plan_day_pass", "Day pass", 1, "day"), ("plan_weekly", "Weekly", 7, "day")]
BAD_PLAN = ("plan_legacy_fortnightly", " ", 0, "fortnight")  # blank name, zero count, unknown unit
PAID_TRIAL_CENTS = [100, 500, 900, 1900, 4900]
BILLING_SOURCES = [("ds_billing_stripe", "cus_stripe_"), ("ds_billing_chargebee", "cus_chargebee_")]

# The rules each entity's broken rows break, worded as the validators word them
# ("field: rule", or "duplicate <id>" for an older row sharing an id).
LEAD_RULES = (
    "lead_id: must be present",
    "duplicate lead_id",
    "company_name: must be present",
    "email: must be a valid email address",
    "country: must be an ISO 3166-1 alpha-2 country code",
    "lead_created_at: must not be after free_trial_started_at",
    "updated_at: must not be in the future",
)
PLAN_RULES = (
    "name: must be present",
    "interval_count: must be at least 1",
    "interval_unit: must be one of day, month, year",
    "updated_at: must not be in the future",
)
TRIAL_RULES = (
    "trial_id: must be present",
    "duplicate trial_id",
    "lead_id: must name a lead that is valid or was synced before",
    "plan_id: must name a plan that is valid or was synced before",
    "ends_at: must be after started_at",
    "amount_in_cents: must not be negative",
    "currency: must be an ISO 4217 currency code",
    "quantity: must be at least 1",
    "updated_at: must not be in the future",
)
CONVERSION_RULES = (
    "lead_id: must be present",
    "duplicate lead_id",
    "lead_id: must name a lead mogulflow has synced",
    "billing_data_source_uuid: must be present",
    "billing_customer_external_id: must be present",
    "converted_at: must not be in the future",
)


@dataclass(frozen=True)
class SampleStats:
    """What the sample holds and which rejects a full-refresh validation of it must give.

    `rows`: rows per table. `rejected`: rejected rows per entity. `rule_failures`: per entity, how
    many rejected rows break each rule (a row may break several: the one bad plan breaks four).
    `leads_dated_by_trial`: valid leads with neither date, whose `lead_created_at` comes from their
    earliest trial (the default rule).
    """

    seed: int
    rows: Mapping[str, int]
    rejected: Mapping[Entity, int]
    rule_failures: Mapping[Entity, Mapping[str, int]] = field(default_factory=dict)
    leads_dated_by_trial: int = 0

    def summary(self) -> str:
        """A few lines for the CLI and the demo."""
        lines = [f"sample warehouse (seed {self.seed}):"]
        for table, entity in zip(TABLES, TABLE_ENTITIES, strict=True):
            rows, rejected = self.rows[table], self.rejected[entity]
            lines.append(
                f"  {table:<12} {rows:>9,} rows, {rejected:>6,} to be rejected ({100 * rejected / rows:.1f}%)"
            )
        for table in ATTRIBUTE_TABLES:
            if table in self.rows:
                lines.append(
                    f"  {table:<12} {self.rows[table]:>9,} rows (optional table: segments the funnel)"
                )
        lines.append(
            f"  {self.leads_dated_by_trial:,} leads have no date of their own: their trials date them"
        )
        return "\n".join(lines)


def build_sample_warehouse(
    path: str | Path, *, seed: int = 7, leads: int = 3000, attributes: bool = False
) -> SampleStats:
    """(Re)create the four source tables in the DuckDB file at `path` and fill them; with
    `attributes`, the optional `lead_attributes` and `lead_tags` too (`mogulflow_demo.sample_attributes`)."""
    import duckdb  # only the sample needs DuckDB directly

    frames, stats = build_sample_frames(seed=seed, leads=leads, attributes=attributes)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as connection:
        for table in (*TABLES, *ATTRIBUTE_TABLES):
            connection.execute(f"DROP TABLE IF EXISTS {table}")
        if attributes:
            write_attribute_tables(connection, frames)
        connection.execute(read_sql("schema.sql"))
        for table in TABLES:
            frame = frames[table]
            connection.register("sample_rows", frame)
            columns = ", ".join(frame.columns)
            connection.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM sample_rows")
            connection.unregister("sample_rows")
    return stats


def build_sample_frames(
    *, seed: int = 7, leads: int = 3000, attributes: bool = False
) -> tuple[dict[str, pd.DataFrame], SampleStats]:
    """The four source tables (with `attributes`, six) as DataFrames (naive-UTC timestamps), and
    what they hold. The attributes and tags name valid leads only: none of them is rejected."""
    if leads < MIN_LEADS:
        raise ValueError(f"leads must be at least {MIN_LEADS} (so that rejects stay under 4%), got {leads}")
    rng = np.random.default_rng(seed)
    words = _WordPools(seed)
    per_lead_rule = _broken_per_rule(leads, LEAD_RULES)
    good_leads = _good_leads(rng, words, leads - per_lead_rule * len(LEAD_RULES))
    plans = _plans()
    good_trials = _good_trials(rng, good_leads, plans)
    good_conversions = _good_conversions(rng, good_leads, good_trials)

    broken_leads = _broken_leads(rng, good_leads, per_lead_rule)
    per_trial_rule = _broken_per_rule(len(good_trials), TRIAL_RULES)
    broken_trials = _broken_trials(rng, good_trials, per_trial_rule)
    per_conversion_rule = _broken_per_rule(len(good_conversions), CONVERSION_RULES)
    broken_conversions = _broken_conversions(rng, good_conversions, good_leads, per_conversion_rule)

    frames = {
        "leads": _shuffled(rng, pd.concat([good_leads.drop(columns="has_trial"), broken_leads])),
        "plans": plans,
        "trials": _shuffled(rng, pd.concat([good_trials, broken_trials])),
        "conversions": _shuffled(rng, pd.concat([good_conversions, broken_conversions])),
    }
    if attributes:
        frames.update(build_attribute_frames(good_leads["lead_id"], good_leads["updated_at"], seed=seed))
    for frame in frames.values():
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]):
                frame[column] = frame[column].astype("datetime64[us]")
    stats = SampleStats(
        seed=seed,
        rows={table: len(frame) for table, frame in frames.items()},
        rejected={
            Entity.LEAD: per_lead_rule * len(LEAD_RULES),
            Entity.PLAN: 1,
            Entity.TRIAL: per_trial_rule * len(TRIAL_RULES),
            Entity.CONVERSION: per_conversion_rule * len(CONVERSION_RULES),
        },
        rule_failures={
            Entity.LEAD: dict.fromkeys(LEAD_RULES, per_lead_rule),
            Entity.PLAN: dict.fromkeys(PLAN_RULES, 1),
            Entity.TRIAL: dict.fromkeys(TRIAL_RULES, per_trial_rule),
            Entity.CONVERSION: dict.fromkeys(CONVERSION_RULES, per_conversion_rule),
        },
        leads_dated_by_trial=int(
            (good_leads["lead_created_at"].isna() & good_leads["free_trial_started_at"].isna()).sum()
        ),
    )
    if attributes:  # every attribute and tag names a valid lead: none is rejected
        stats = dataclasses.replace(
            stats,
            rejected={**stats.rejected, Entity.ATTRIBUTE: 0, Entity.TAG: 0},
            rule_failures={**stats.rule_failures, Entity.ATTRIBUTE: {}, Entity.TAG: {}},
        )
    return frames, stats


def _broken_per_rule(rows: int, rules: tuple[str, ...]) -> int:
    return max(1, round(rows * BROKEN_SHARE / len(rules)))


# --- words -----------------------------------------------------------------------------------------


class _WordPools:
    """Per-country pools of Faker words (surnames, first names, company suffixes), with ASCII slugs."""

    SIZE = 300

    def __init__(self, seed: int) -> None:
        self.surnames: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.first_names: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.suffixes: dict[str, np.ndarray] = {}
        for number, (country, (locale, *_)) in enumerate(COUNTRIES.items()):
            fake = Faker(locale)
            fake.seed_instance(seed * 1000 + number)
            self.surnames[country] = _with_slugs(fake.last_name() for _ in range(self.SIZE))
            self.first_names[country] = _with_slugs(fake.first_name() for _ in range(self.SIZE))
            suffixes = sorted({fake.company_suffix() for _ in range(50)})
            self.suffixes[country] = np.array(suffixes, dtype=object)


def _with_slugs(words: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct words whose ASCII slug is not empty (first-seen order), and their slugs."""
    kept = list(dict.fromkeys(w for w in words if _slug(w)))
    return np.array(kept, dtype=object), np.array([_slug(w) for w in kept], dtype=object)


def _slug(text: str) -> str:
    """'Müller & Söhne' → 'muller-sohne': what a company's domain or a mailbox could be called."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    parts = "".join(c if c.isalnum() else " " for c in ascii_text).split()
    return "-".join(parts)[:30].strip("-")


# --- good rows -------------------------------------------------------------------------------------


def _good_leads(rng: np.random.Generator, words: _WordPools, n: int) -> pd.DataFrame:
    countries = rng.choice(list(COUNTRIES), size=n, p=COUNTRY_WEIGHTS)
    company, domain, email, state, city, zip_code = (np.empty(n, dtype=object) for _ in range(6))
    for country, (_, tld, _, places) in COUNTRIES.items():
        rows = np.flatnonzero(countries == country)
        k = len(rows)
        surnames, surname_slugs = words.surnames[country]
        one, two = rng.integers(len(surnames), size=k), rng.integers(len(surnames), size=k)
        first, second = surnames[one], surnames[two]
        suffix = words.suffixes[country][rng.integers(len(words.suffixes[country]), size=k)]
        pattern = rng.integers(3, size=k)  # "Smith Ltd", "Smith-Jones", "Smith & Jones"
        company[rows] = np.where(
            pattern == 0,
            first + " " + suffix,
            np.where(pattern == 1, first + "-" + second, first + " & " + second),
        )
        slug = np.where(pattern == 0, surname_slugs[one], surname_slugs[one] + "-" + surname_slugs[two])
        domain[rows] = slug + "." + tld
        given_names, given_slugs = words.first_names[country]
        given = given_slugs[rng.integers(len(given_names), size=k)]
        email[rows] = given + "." + surname_slugs[one] + "@" + domain[rows]
        place = rng.integers(len(places), size=k)
        state[rows] = np.array([p[0] for p in places], dtype=object)[place]
        city[rows] = np.array([p[1] for p in places], dtype=object)[place]
        zip_code[rows] = np.array([p[2] for p in places], dtype=object)[place]

    tagged = rng.random(n) < 0.03  # "jane+trial@acme.com": valid, a little unusual
    email[tagged] = np.char.replace(email[tagged].astype(str), "@", "+trial@").astype(object)
    email[rng.random(n) < 0.05] = None
    shown_country = countries.astype(object)
    lower = rng.random(n) < 0.05
    shown_country[lower] = np.char.lower(countries[lower].astype(str)).astype(object)
    shown_country[rng.random(n) < 0.02] = None

    # 60% both dates, 15% lead date only, 10% trial date only, 15% neither (their trial dates them)
    kind = rng.choice(4, size=n, p=[0.60, 0.15, 0.10, 0.15])
    created = _random_moments(rng, n)
    trial_start = created + pd.to_timedelta(rng.integers(0, 14 * 86400, size=n), unit="s")
    lead_created_at = pd.Series(created).where(np.isin(kind, [0, 1]))
    free_trial_started_at = pd.Series(trial_start).where(np.isin(kind, [0, 2]))
    has_trial = (kind == 3) | ((kind != 1) & (rng.random(n) < 0.92)) | ((kind == 1) & (rng.random(n) < 0.5))
    updated_at = pd.Series(trial_start) + pd.to_timedelta(rng.integers(0, 3 * 86400, size=n), unit="s")

    return pd.DataFrame(
        {
            "lead_id": [f"lead_{i:07d}" for i in range(n)],
            "company_name": company,
            "email": email,
            "country": shown_country,
            "state": state,
            "city": city,
            "zip": zip_code,
            "lead_created_at": lead_created_at,
            "free_trial_started_at": free_trial_started_at,
            "updated_at": updated_at.to_numpy(),
            "has_trial": has_trial,
        }
    )


def _plans() -> pd.DataFrame:
    rows = [
        (f"plan_{tier}_{label}", f"{tier.title()} {label}", count, unit)
        for tier in TIERS
        for label, count, unit in INTERVALS
    ]
    rows += [*EXTRA_PLANS, BAD_PLAN]
    frame = pd.DataFrame(rows, columns=["plan_id", "name", "interval_count", "interval_unit"])
    frame["updated_at"] = SAMPLE_START + pd.to_timedelta(np.arange(len(frame)), unit="h")
    frame.loc[frame["plan_id"] == BAD_PLAN[0], "updated_at"] = FUTURE
    return frame


def _good_trials(rng: np.random.Generator, leads: pd.DataFrame, plans: pd.DataFrame) -> pd.DataFrame:
    with_trial = leads[leads["has_trial"]]
    again = rng.random(len(with_trial)) < 0.05  # a few leads try a second plan a month later
    dated = with_trial["free_trial_started_at"].fillna(with_trial["lead_created_at"]).to_numpy(copy=True)
    undated = pd.isna(dated)
    dated[undated] = _random_moments(rng, undated.sum())
    started = pd.Series(np.concatenate([dated, dated[again] + np.timedelta64(31, "D")]))
    n = len(started)
    ends = started + pd.to_timedelta(rng.choice([7, 14, 14, 14, 30], size=n), unit="D")
    lead_ids = np.concatenate([with_trial["lead_id"].to_numpy(), with_trial["lead_id"].to_numpy()[again]])
    countries = with_trial["country"].str.upper().fillna("US").to_numpy()
    currency = np.array(
        [COUNTRIES[c][2] for c in np.concatenate([countries, countries[again]])], dtype=object
    )
    lower = rng.random(n) < 0.05
    currency[lower] = np.char.lower(currency[lower].astype(str)).astype(object)
    good_plan_ids = plans.loc[plans["plan_id"] != BAD_PLAN[0], "plan_id"].to_numpy()
    popularity = 1.0 / np.arange(1, len(good_plan_ids) + 1)
    paid = rng.random(n) < 0.12
    subscription = np.array([f"sub_{i:08x}" for i in rng.integers(0, 2**32, size=n)], dtype=object)
    subscription[rng.random(n) < 0.3] = None  # the trial id stands in
    return pd.DataFrame(
        {
            "trial_id": [f"trial_{i:07d}" for i in range(n)],
            "lead_id": lead_ids,
            "plan_id": rng.choice(good_plan_ids, size=n, p=popularity / popularity.sum()),
            "subscription_id": subscription,
            "started_at": started,
            "ends_at": ends,
            "amount_in_cents": np.where(paid, rng.choice(PAID_TRIAL_CENTS, size=n), 0),
            "currency": currency,
            "quantity": np.where(rng.random(n) < 0.8, 1, rng.integers(2, 11, size=n)),
            "updated_at": started + pd.to_timedelta(rng.integers(0, 2 * 86400, size=n), unit="s"),
        }
    )


def _random_moments(rng: np.random.Generator, n: int) -> np.ndarray:
    """Moments early enough that a lead's trial, even a second one, ends before `SAMPLE_END`."""
    span = int((SAMPLE_END - pd.Timedelta(days=75) - SAMPLE_START).total_seconds())
    return (SAMPLE_START + pd.to_timedelta(rng.integers(0, span, size=n), unit="s")).to_numpy(
        "datetime64[us]"
    )


def _good_conversions(rng: np.random.Generator, leads: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    last_trial = trials.groupby("lead_id", sort=False)["ends_at"].max()
    converted = last_trial[rng.random(len(last_trial)) < 0.2]
    n = len(converted)
    source = rng.integers(len(BILLING_SOURCES), size=n, endpoint=False)
    source = np.where(rng.random(n) < 0.8, 0, source)
    prefixes = np.array([prefix for _, prefix in BILLING_SOURCES], dtype=object)[source]
    suffix = np.array([f"{i:012x}" for i in rng.integers(0, 2**48, size=n)], dtype=object)
    converted_at = (
        converted.to_numpy() - pd.to_timedelta(rng.integers(0, 3 * 86400, size=n), unit="s").to_numpy()
    )
    return pd.DataFrame(
        {
            "lead_id": converted.index.to_numpy(),
            "billing_data_source_uuid": np.array([ds for ds, _ in BILLING_SOURCES], dtype=object)[source],
            "billing_customer_external_id": prefixes + suffix,
            "converted_at": converted_at,
        }
    )


# --- broken rows: each breaks exactly the rule it is listed under (the bad plan: four) -------------


def _broken_leads(rng: np.random.Generator, good: pd.DataFrame, k: int) -> pd.DataFrame:
    """k rows per rule of `LEAD_RULES`, as new leads without trials (so no trial is rejected with them)."""
    pool = good[~good["has_trial"]] if (~good["has_trial"]).sum() >= 7 * k else good
    rows = pool.sample(n=7 * k, random_state=rng.integers(2**32), replace=len(pool) < 7 * k).drop(
        columns="has_trial"
    )
    rows = rows.reset_index(drop=True)
    rows["lead_id"] = [f"lead_x{i:06d}" for i in range(len(rows))]
    rule = np.repeat(np.arange(7), k)
    rows.loc[rule == 0, "lead_id"] = None
    dup_source = good.sample(n=k, random_state=rng.integers(2**32)).drop(columns="has_trial")
    duplicates = dup_source.assign(
        company_name=dup_source["company_name"] + " (old)",
        updated_at=dup_source["updated_at"] - pd.Timedelta(days=9),
    )
    rows.loc[rule == 2, "company_name"] = np.resize(np.array([None, "   "], dtype=object), k)
    bad_emails = np.array(["jane.doe@", "jane doe@acme.com", "jane@@acme.com", "jane@acme", ".jane@acme.com"])
    rows.loc[rule == 3, "email"] = np.resize(bad_emails, k).astype(object)
    rows.loc[rule == 4, "country"] = np.resize(np.array(["UK", "XX", "USA", "Deutschland"], dtype=object), k)
    late = rule == 5
    rows.loc[late, "lead_created_at"] = rows.loc[late, "updated_at"] - pd.Timedelta(days=1)
    rows.loc[late, "free_trial_started_at"] = rows.loc[late, "updated_at"] - pd.Timedelta(days=4)
    rows.loc[rule == 6, "updated_at"] = FUTURE
    rows = rows[rule != 1]
    return pd.concat([rows, duplicates], ignore_index=True)


def _broken_trials(rng: np.random.Generator, good: pd.DataFrame, k: int) -> pd.DataFrame:
    """k rows per rule of `TRIAL_RULES`, copies of good trials (of valid leads and plans) with one flaw."""
    rows = good.sample(n=9 * k, random_state=rng.integers(2**32), replace=len(good) < 9 * k).reset_index(
        drop=True
    )
    rows["trial_id"] = [f"trial_x{i:06d}" for i in range(len(rows))]
    rule = np.repeat(np.arange(9), k)
    rows.loc[rule == 0, "trial_id"] = None
    originals = good.sample(n=k, random_state=rng.integers(2**32))
    duplicates = originals.assign(
        amount_in_cents=originals["amount_in_cents"] + 1000,
        updated_at=originals["updated_at"] - pd.Timedelta(days=2),
    )
    rows.loc[rule == 2, "lead_id"] = [f"lead_gone_{i:04d}" for i in range(k)]
    rows.loc[rule == 3, "plan_id"] = np.resize(np.array([BAD_PLAN[0], "plan_unknown"], dtype=object), k)
    backwards = rule == 4
    rows.loc[backwards, "ends_at"] = rows.loc[backwards, "started_at"] - pd.Timedelta(days=1)
    rows.loc[rule == 5, "amount_in_cents"] = -rows.loc[rule == 5, "amount_in_cents"].clip(lower=100)
    rows.loc[rule == 6, "currency"] = np.resize(np.array(["EURO", "US$", "ZZZ"], dtype=object), k)
    rows.loc[rule == 7, "quantity"] = 0
    rows.loc[rule == 8, "updated_at"] = FUTURE
    rows = rows[rule != 1]
    return pd.concat([rows, duplicates], ignore_index=True)


def _broken_conversions(
    rng: np.random.Generator, good: pd.DataFrame, leads: pd.DataFrame, k: int
) -> pd.DataFrame:
    """k rows per rule of `CONVERSION_RULES`: new conversions of leads that have none, with one flaw."""
    unconverted = leads.loc[~leads["lead_id"].isin(good["lead_id"]) & leads["has_trial"], "lead_id"]
    lead_ids = unconverted.sample(n=6 * k, random_state=rng.integers(2**32)).to_numpy()
    template = good.sample(n=6 * k, random_state=rng.integers(2**32), replace=True).reset_index(drop=True)
    rows = template.assign(
        lead_id=lead_ids,
        billing_customer_external_id=template["billing_customer_external_id"]
        + [f"x{i}" for i in range(6 * k)],
    )
    rule = np.repeat(np.arange(6), k)
    rows.loc[rule == 0, "lead_id"] = None
    originals = good.sample(n=k, random_state=rng.integers(2**32))
    duplicates = originals.assign(
        billing_customer_external_id=originals["billing_customer_external_id"] + "_old",
        converted_at=originals["converted_at"] - pd.Timedelta(days=5),
    )
    rows.loc[rule == 2, "lead_id"] = [f"lead_gone_{i:04d}" for i in range(k)]
    rows.loc[rule == 3, "billing_data_source_uuid"] = None
    rows.loc[rule == 4, "billing_customer_external_id"] = " "
    rows.loc[rule == 5, "converted_at"] = FUTURE
    rows = rows[rule != 1]
    return pd.concat([rows, duplicates], ignore_index=True)


def _shuffled(rng: np.random.Generator, frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def main(argv: Sequence[str] | None = None, *, prog: str = "mogulflow sample-warehouse") -> int:
    """The CLI: build the sample warehouse and print what it holds."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the DuckDB file to (re)create the source tables in")
    parser.add_argument("--seed", type=int, default=7, help="same seed, same rows (default 7)")
    parser.add_argument("--leads", type=int, default=3000, help=f"rows of the leads table (≥ {MIN_LEADS})")
    parser.add_argument(
        "--attributes",
        action="store_true",
        help="also the optional lead_attributes (5 a lead) and lead_tags (2 a lead) tables",
    )
    args = parser.parse_args(argv)
    started = datetime.now()
    stats = build_sample_warehouse(args.path, seed=args.seed, leads=args.leads, attributes=args.attributes)
    print(stats.summary())
    print(f"written to {args.path} in {(datetime.now() - started).total_seconds():.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
