"""User-given dates meet tz-aware and naive columns alike (one rule, omni_lib.timeutil)."""
import pandas as pd
import pytest

from omni_lib import cannibalisation, channels
from omni_lib.timeutil import as_bound

AWARE = pd.Series(pd.to_datetime(["2025-06-30 10:00", "2025-07-01 09:00"]).tz_localize("Asia/Jakarta"))
NAIVE = pd.Series(pd.to_datetime(["2025-06-30 10:00", "2025-07-01 09:00"]))


def test_as_bound_matches_the_column():
    b = as_bound("2025-06-30", AWARE, end_of_day=True)
    assert str(b.tz) == "Asia/Jakarta" and b.hour == 23 and (AWARE <= b).tolist() == [True, False]
    b = as_bound(pd.Timestamp("2025-06-30 03:00", tz="UTC"), NAIVE)
    assert b.tzinfo is None
    assert as_bound("2025-06-30", NAIVE) == pd.Timestamp("2025-06-30")
    with pytest.raises(ValueError, match="start: cannot read 'yesterday-ish'"):
        as_bound("yesterday-ish", AWARE, what="start")


def test_channel_date_range_with_an_aware_bound_on_naive_data():
    df = pd.DataFrame({"order_ts": NAIVE})
    out = channels._in_range(df, "order_ts", pd.Timestamp("2025-07-01", tz="Asia/Jakarta"), None)
    assert len(out) == 1
    with pytest.raises(channels.ChannelInputError, match="end"):
        channels._in_range(df, "order_ts", None, "not a date")


def test_cannibalisation_bounds_are_clear():
    with pytest.raises(cannibalisation.CannibalisationInputError, match="period bound"):
        cannibalisation._ts("31/02/2025", "Asia/Jakarta")
    assert cannibalisation._ts(pd.Timestamp("2025-07-01", tz="UTC"), None).tzinfo is None


def test_experiment_data_end_as_a_plain_date(true_ds, sample_dir, sample_config):
    from omni_lib import experiments as ab, io, privacy

    ds = true_ds
    tables, _ = privacy.apply_consent(ds.tables)
    data = ab.prepare(tables, "EXP01_email_subject", config=ds.config, data_end="2026-06-30")
    assert len(data.units) > 0 and data.data_end.hour == 23 and str(data.data_end.tz) == "Asia/Jakarta"
    with pytest.raises(ab.ExperimentInputError, match="after the data end"):
        ab.prepare(tables, "EXP01_email_subject", config=ds.config, data_end="2025-10-01")
