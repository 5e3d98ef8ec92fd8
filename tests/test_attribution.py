"""Attribution: exact Markov removal effects, Shapley, heuristics, bad input, planted truth."""
from __future__ import annotations

import itertools
import json
import math
import os
import signal

import numpy as np
import pandas as pd
import pytest

from omni_lib import attribution as at

TZ = "Asia/Jakarta"


def _ts(s):
    return pd.Timestamp(s, tz=TZ)


def touches(rows):
    """rows: (journey, channel or None, event time or None, converted, conversion time, value)."""
    df = pd.DataFrame(rows, columns=["journey_id", "channel", "event_ts", "converted", "conversion_ts", "value"])
    df["event_ts"] = pd.to_datetime(df["event_ts"]).dt.tz_localize(TZ)
    df["conversion_ts"] = pd.to_datetime(df["conversion_ts"]).dt.tz_localize(TZ)
    df["channel"] = df["channel"].astype("str")
    return df


# ----------------------------------------------------------------------------- Markov
def test_markov_hand_computed_chain():
    # start->a 2/3, start->b 1/3; a->b 1/2, a->null 1/2; b->conv 1/2, b->null 1/2
    # P(conv) = 2/3*1/4 + 1/3*1/2 = 1/3; without a: 1/6 (RE 1/2); without b: 0 (RE 1)
    paths = pd.DataFrame({"path": ["a>b", "b", "a"], "conversions": [1, 0, 0], "nulls": [0, 1, 1]})
    m = at.MarkovAttribution().fit(paths)
    assert m.conversion_probability_ == pytest.approx(1 / 3, abs=1e-12)
    assert m.removal_effects_["a"] == pytest.approx(0.5, abs=1e-12)
    assert m.removal_effects_["b"] == pytest.approx(1.0, abs=1e-12)
    att = m.attribution_.set_index("channel")
    assert att.loc["a", "conversions"] == pytest.approx(1 / 3) and att.loc["b", "conversions"] == pytest.approx(2 / 3)
    tm = m.transition_matrix_.set_index(["from", "to"])["probability"]
    assert tm[("(start)", "a")] == pytest.approx(2 / 3) and tm[("a", "b")] == pytest.approx(0.5)
    assert tm[("b", "(conversion)")] == pytest.approx(0.5)
    assert tm.groupby(level="from").sum().to_numpy() == pytest.approx(1.0)


def _random_paths(rng, n_paths=400, channels="abcd", max_len=5):
    paths = [">".join(rng.choice(list(channels), rng.integers(1, max_len + 1))) for _ in range(n_paths)]
    conv = rng.integers(0, 4, n_paths)
    nul = rng.integers(0, 6, n_paths)
    return pd.DataFrame({"path": paths, "conversions": conv, "nulls": nul})


def _simulate(Q, r_conv, start, removed, n, rng):
    """Random walks on the fitted chain (independent of the linear solve)."""
    S = Q.shape[0]
    P = np.zeros((S, S + 2))
    P[:, :S] = Q
    P[:, S] = r_conv
    P[:, S + 1] = 1 - Q.sum(1) - r_conv
    cum = np.cumsum(P, axis=1)
    state = np.full(n, start)
    done = np.zeros(n, dtype=bool)
    conv = np.zeros(n, dtype=bool)
    for _ in range(500):
        u = rng.random(n)
        nxt = (u[:, None] > cum[state]).sum(1)
        nxt = np.minimum(nxt, S + 1)
        hit_removed = np.isin(nxt, removed)
        conv |= ~done & (nxt == S)
        done |= (nxt >= S) | hit_removed
        state = np.where(done, start, nxt)
        if done.all():
            break
    return conv.mean()


def test_markov_exact_matches_simulation_on_a_small_chain():
    rng = np.random.default_rng(1)
    m = at.MarkovAttribution().fit(_random_paths(rng))
    start = len(m.channels_)          # state index of (start) (states: channels, then start)
    n = 200_000
    p_sim = _simulate(m._Q, m._r, start, [], n, rng)
    se = math.sqrt(p_sim * (1 - p_sim) / n)
    assert abs(p_sim - m.conversion_probability_) < 4 * se
    for i, c in enumerate(m.channels_):
        q = _simulate(m._Q, m._r, start, [i], n, rng)
        re_sim = 1 - q / p_sim
        # delta-method bound on the ratio's noise
        se_re = math.sqrt(q * (1 - q) / n + p_sim * (1 - p_sim) / n) / p_sim
        assert abs(re_sim - m.removal_effects_[c]) < 5 * se_re, c


def test_markov_high_order_equals_path_counting():
    # with order >= the longest path every state is a whole prefix, so removing c loses exactly
    # the conversions of the paths through c: an independent count
    rng = np.random.default_rng(2)
    paths = _random_paths(rng, n_paths=300, max_len=3)
    m = at.MarkovAttribution(order=3).fit(paths)
    g = paths.groupby("path")[["conversions"]].sum()
    total = g["conversions"].sum()
    for c in m.channels_:
        through = g.loc[[c in p.split(">") for p in g.index], "conversions"].sum()
        assert m.removal_effects_[c] == pytest.approx(through / total, abs=1e-9)


def test_markov_self_loops_do_not_change_removal_effects():
    a = pd.DataFrame({"path": ["x>y", "y", "x"], "conversions": [3, 1, 0], "nulls": [1, 2, 2]})
    b = a.assign(path=["x>x>y", "y>y", "x"])
    ra = at.MarkovAttribution().fit(a).removal_effects_
    rb = at.MarkovAttribution().fit(b).removal_effects_
    pd.testing.assert_series_equal(ra, rb, atol=1e-12)


def _walks_up_to(Q, r, start, M, removed=()):
    """P(conversion within M channel visits) by enumerating every walk (independent of the
    matrix products): depth-first over the chain, probability mass carried along."""
    total = 0.0
    stack = [(start, 1.0, 0)]
    while stack:
        s, p, visits = stack.pop()
        total += p * r[s]
        if visits == M:
            continue
        for t in np.nonzero(Q[s])[0]:
            if t not in removed:
                stack.append((t, p * Q[s, t], visits + 1))
    return total


def test_markov_max_steps_is_the_truncated_chain():
    # ChannelAttribution's semantics: repeats collapsed, walks longer than M visits do not convert
    rng = np.random.default_rng(3)
    paths = _random_paths(rng, n_paths=200, channels="abc", max_len=4)
    for M in (1, 3, 5):
        m = at.MarkovAttribution(max_steps=M).fit(paths)
        assert m.max_steps_ == M
        assert (np.diag(m._Q)[:-1] == 0).all()            # no self-transitions left
        start = len(m.channels_)
        p = _walks_up_to(m._Q, m._r, start, M)
        assert m.conversion_probability_ == pytest.approx(p, abs=1e-12)
        for i, c in enumerate(m.channels_):
            q = _walks_up_to(m._Q, m._r, start, M, removed=(i,))
            assert m.removal_effects_[c] == pytest.approx(1 - q / p, abs=1e-12), (M, c)
    # a long horizon is the unbounded chain; "data" = 1 + the longest path after collapsing
    long = at.MarkovAttribution(max_steps=400).fit(paths).removal_effects_
    pd.testing.assert_series_equal(long, at.MarkovAttribution().fit(paths).removal_effects_, atol=1e-9)
    d = pd.DataFrame({"path": ["a>a>b", "b>c", "c"], "conversions": [1, 1, 0], "nulls": [0, 1, 1]})
    assert at.MarkovAttribution(max_steps="data").fit(d).max_steps_ == 3
    # repeats do not count as visits: 'a>a>b' is 'a>b'
    e = d.assign(path=["a>b", "b>c", "c"])
    pd.testing.assert_series_equal(at.MarkovAttribution(max_steps=2).fit(d).removal_effects_,
                                   at.MarkovAttribution(max_steps=2).fit(e).removal_effects_, atol=1e-12)
    with pytest.raises(at.AttributionInputError, match="max_steps"):
        at.MarkovAttribution(max_steps=0)
    with pytest.raises(at.AttributionInputError, match="within max_steps=1"):   # a>b needs 2 visits
        at.MarkovAttribution(max_steps=1).fit(pd.DataFrame({"path": ["a>b"], "conversions": [1], "nulls": [0]}))


def test_markov_threaded_grouping_matches_one_pass(monkeypatch):
    rng = np.random.default_rng(4)
    paths = _random_paths(rng, n_paths=500).assign(value=lambda d: d["conversions"] * 10.0)
    paths.loc[3, "path"] = ""                                   # a conversion without touches
    paths.loc[3, "conversions"] = 2
    one = at.MarkovAttribution().fit(paths)
    monkeypatch.setattr(at, "_ROWS_PER_THREAD", 50)
    monkeypatch.setattr(at, "_threads", lambda: 3)
    three = at.MarkovAttribution().fit(paths)
    pd.testing.assert_frame_equal(one.attribution_, three.attribution_, atol=1e-12)
    pd.testing.assert_series_equal(one.value_removal_effects_, three.value_removal_effects_, atol=1e-12)
    # integer counts are summed packed two-in-one; float counts one by one: same numbers
    flt = at.MarkovAttribution().fit(paths.astype({"conversions": float, "nulls": float}))
    pd.testing.assert_frame_equal(one.attribution_, flt.attribution_, atol=1e-12)
    big = paths.assign(conversions=paths["conversions"] * 10**9, nulls=paths["nulls"] * 10**9)
    pd.testing.assert_frame_equal(one.attribution_.drop(columns=["conversions"]),
                                  at.MarkovAttribution().fit(big).attribution_.drop(columns=["conversions"]),
                                  atol=1e-12)
    bad = paths.assign(nulls=paths["nulls"].astype(float))
    bad.loc[400, "nulls"] = np.nan
    with pytest.raises(at.AttributionInputError, match="nulls"):
        at.MarkovAttribution().fit(bad)
    with pytest.raises(at.AttributionInputError, match="conversions"):
        at.MarkovAttribution().fit(paths.assign(conversions=-paths["conversions"]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_markov_threaded_grouping_works_in_a_forked_child(monkeypatch):
    # the kept thread pool must not be reused by a forked child, which has none of its threads
    monkeypatch.setattr(at, "_ROWS_PER_THREAD", 50)
    monkeypatch.setattr(at, "_threads", lambda: 2)
    paths = _random_paths(np.random.default_rng(5), n_paths=300)
    want = at.MarkovAttribution().fit(paths).removal_effects_.to_numpy()     # pool made here
    pid = os.fork()
    if pid == 0:                                                 # child: exit 0 only if it matches
        code = 1
        try:
            signal.alarm(30)                                     # a deadlock ends as a failure
            got = at.MarkovAttribution().fit(paths).removal_effects_.to_numpy()
            code = 0 if np.allclose(got, want, atol=1e-12) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


# ----------------------------------------------------------------------------- Shapley
def _game_touches(rates: dict[frozenset, tuple[int, int]]):
    rows, j = [], 0
    for s, (n, k) in rates.items():
        for i in range(n):
            j += 1
            conv = i < k
            for c in sorted(s):
                rows.append((f"J{j}", c, "2025-01-01", conv, "2025-01-02" if conv else None, 10.0 if conv else 0.0))
    return touches(rows)


def test_shapley_two_players_by_hand():
    t = _game_touches({frozenset("a"): (100, 20), frozenset("b"): (100, 40), frozenset("ab"): (100, 50)})
    sh = at.ShapleyAttribution(min_journeys=1).fit(t)
    # phi_a = (0.2 + (0.5 - 0.4)) / 2 = 0.15; phi_b = (0.4 + (0.5 - 0.2)) / 2 = 0.35
    assert sh.values_["a"] == pytest.approx(0.15) and sh.values_["b"] == pytest.approx(0.35)


def test_shapley_matches_permutation_brute_force():
    rng = np.random.default_rng(3)
    players = "abcd"
    sets = [frozenset(c) for r in range(1, 5) for c in itertools.combinations(players, r)]
    spec = {s: (50, int(rng.integers(0, 51))) for s in sets}
    sh = at.ShapleyAttribution(min_journeys=1).fit(_game_touches(spec))
    v = {s: k / n for s, (n, k) in spec.items()}
    v[frozenset()] = 0.0
    for p in players:
        tot = 0.0
        perms = list(itertools.permutations(players))
        for perm in perms:
            before = frozenset(perm[:perm.index(p)])
            tot += v[before | {p}] - v[before]
        assert sh.values_[p] == pytest.approx(tot / len(perms), abs=1e-12)


# ----------------------------------------------------------------------------- heuristics
def _three_journeys():
    return touches([
        ("J1", "email", "2025-01-01", True, "2025-01-04", 100.0),
        ("J1", "search", "2025-01-02", True, "2025-01-04", 100.0),
        ("J1", "direct", "2025-01-03", True, "2025-01-04", 100.0),
        ("J2", "social_ad", "2025-01-01", True, "2025-01-02", 50.0),
        ("J3", "email", "2025-01-01", False, None, 0.0),
        ("J4", None, None, True, "2025-01-05", 30.0),
    ])


def test_heuristics_by_hand():
    t = _three_journeys()
    def sh(m, **k):   # non-zero credit per channel
        r = at.heuristic_attribution(t, m, **k).set_index("channel")["conversions"]
        return r[r != 0]

    assert sh("first_touch").to_dict() == {"email": 1, "social_ad": 1, "(no touch)": 1}
    assert sh("last_touch").to_dict() == {"direct": 1, "social_ad": 1, "(no touch)": 1}
    assert sh("last_non_direct")["search"] == 1 and "direct" not in sh("last_non_direct")
    lin = sh("linear")
    assert lin["email"] == pytest.approx(1 / 3) and lin["social_ad"] == pytest.approx(1)
    pos = sh("position_based")
    assert pos["email"] == pytest.approx(0.4) and pos["search"] == pytest.approx(0.2) and pos["direct"] == pytest.approx(0.4)
    # time decay, half-life 1 day: ages 3, 2, 1 days -> weights 1/8, 1/4, 1/2
    td = sh("time_decay", half_life_days=1.0)
    assert td["email"] == pytest.approx((1 / 8) / (7 / 8)) and td["direct"] == pytest.approx((1 / 2) / (7 / 8))
    # lookback of 1.5 days keeps only direct in J1
    lb = sh("linear", lookback_days=1.5)
    assert lb["direct"] == pytest.approx(1) and "email" not in lb
    rev = at.heuristic_attribution(t, "linear").set_index("channel")["revenue"]
    assert rev["email"] == pytest.approx(100 / 3) and rev.sum() == pytest.approx(180)


# ----------------------------------------------------------------------------- bad input
def test_unknown_channel_is_named():
    t = _three_journeys()
    t.loc[0, "channel"] = "tiktok"
    with pytest.raises(at.AttributionInputError, match="'tiktok' \\(1\\)"):
        at.heuristic_attribution(t, "linear", channels=["email", "search", "direct", "social_ad"])
    with pytest.raises(at.AttributionInputError, match="tiktok"):
        at.MarkovAttribution(channels=["email", "search", "direct", "social_ad"]).fit(
            pd.DataFrame({"path": ["tiktok>email"], "conversions": [1], "nulls": [0]}))


def test_zero_conversions_raise():
    t = _three_journeys()
    t["converted"] = False
    t["conversion_ts"] = pd.Series(pd.NaT, index=t.index, dtype=t["conversion_ts"].dtype)
    with pytest.raises(at.AttributionInputError, match="no converting journey"):
        at.heuristic_attribution(t, "last_touch")
    with pytest.raises(at.AttributionInputError, match="no conversions"):
        at.MarkovAttribution().fit(pd.DataFrame({"path": ["a>b"], "conversions": [0], "nulls": [5]}))


def test_touches_after_conversion_are_dropped_with_a_note():
    t = pd.concat([_three_journeys(), touches([("J2", "email", "2025-01-03", True, "2025-01-02", 50.0)])],
                  ignore_index=True)
    clean, notes = at.check_touches(t)
    assert any("after their journey's conversion" in n for n in notes)
    assert not ((clean["journey_id"] == "J2") & (clean["channel"] == "email")).any()
    assert at.heuristic_attribution(t, "first_touch").set_index("channel").loc["social_ad", "conversions"] == 1


def test_conversions_without_touches_and_one_channel():
    t = touches([("J1", "email", "2025-01-01", True, "2025-01-02", 5.0),
                 ("J2", "email", "2025-01-01", False, None, 0.0),
                 ("J3", None, None, True, "2025-01-02", 5.0)])
    _, notes = at.check_touches(t)
    assert any("had no marketing touch" in n for n in notes) and any("only one channel" in n for n in notes)
    m = at.MarkovAttribution().fit(t)
    assert m.removal_effects_["email"] == pytest.approx(0.5)   # half the conversions need no touch
    assert m.attribution_["share"].tolist() == [1.0]
    assert at.heuristic_attribution(t, "last_touch").set_index("channel")["conversions"].to_dict() == \
        {"email": 1.0, "(no touch)": 1.0}


def test_build_journeys_assignment():
    tp = pd.DataFrame({
        "event_id": [f"E{i}" for i in range(7)],
        "customer_id": ["C1", "C1", "C1", "C1", "C1", "C2", None],
        "event_ts": [_ts(x) for x in ("2025-01-01", "2025-01-08", "2025-01-09", "2025-01-20", "2025-03-01",
                                      "2025-01-05", "2025-01-05")],
        "channel": ["email", "search", "direct", "email", "social_ad", "email", "email"],
        "event_type": ["click", "click", "visit", "click", "impression", "inquiry", "click"],
        "campaign": [None, None, None, "EXP1", None, None, None]})
    orders = pd.DataFrame({"order_id": ["O1", "O2"], "customer_id": ["C1", "C1"],
                           "order_ts": [_ts("2025-01-10"), _ts("2025-01-25")], "channel": ["web", "store"],
                           "net_amount": [10.0, 20.0]})
    j = at.build_journeys(tp, orders, channels=["email", "search", "direct", "social_ad"],
                          conversion_channels=["web"], lookback_days=7, exclude_campaigns=["EXP1"])
    o1 = j[j["journey_id"] == "O1"]
    assert sorted(o1["channel"]) == ["direct", "search"]        # Jan 1 is > 7 days before
    non = j[~j["converted"]]
    assert sorted(non["channel"]) == ["email", "social_ad"]     # Jan 1 and Mar 1: separate journeys
    assert non["journey_id"].nunique() == 2
    assert "E5" not in j.get("event_id", pd.Series(dtype=str)).tolist() and len(j) == 4  # inquiry, anonymous, EXP1 out


# ----------------------------------------------------------------------------- planted truth
@pytest.fixture(scope="module")
def sample_touches(true_ds, sample_config):
    from omni_lib import io, privacy
    ds = true_ds
    tables, _ = privacy.apply_consent(ds.tables)
    cfg = ds.config
    conv = [c for c, v in cfg.channels.items() if v.sells and v.kind == "online"]
    return at.build_journeys(tables["touchpoints"], tables["orders"], channels=cfg.communication_channels,
                             conversion_channels=conv, lookback_days=7,
                             exclude_campaigns=tables["experiments"]["experiment_id"].unique())


@pytest.fixture(scope="module")
def truth(sample_dir):
    return json.loads((sample_dir / "truth" / "truth.json").read_text())["channel_contributions"]


TOL = 0.02   # 2 percentage points of share, every channel


def test_converting_journeys_match_the_planted_channel_sets(sample_touches, sample_dir):
    tj = pd.read_parquet(sample_dir / "truth" / "journeys.parquet")
    tj = tj[tj["converted"]]
    chans = ["email", "social_ad", "search", "direct", "whatsapp"]
    mine = (sample_touches.dropna(subset=["channel"]).groupby("journey_id")["channel"]
            .agg(lambda s: "|".join(sorted(set(s)))))
    want = tj.set_index("order_id")[[f"has_{c}" for c in chans]]
    want = want.apply(lambda r: "|".join(sorted(c for c in chans if r[f"has_{c}"])), axis=1)
    want = want[want.index.isin(sample_touches["journey_id"])]
    got = mine.reindex(want.index).fillna("")
    assert (got == want).mean() > 0.995


def test_shapley_recovers_planted_contributions(sample_touches, truth):
    sh = at.ShapleyAttribution().fit(sample_touches)
    for c, v in truth["shapley_share_base_split"].items():      # global game, v(empty) = 0
        assert abs(sh.shares_[c] - v) <= TOL, (c, sh.shares_[c], v)
    for c, v in truth["expected_credit_share"].items():          # per-conversion credit
        assert abs(sh.credit_shares_[c] - v) <= TOL, (c, sh.credit_shares_[c], v)


def test_markov_recovers_planted_conversion_paths(sample_touches, truth):
    # the Markov removal effect of c is the share of conversions lost when every journey
    # through c is lost; under the planted model that is sum_{S contains c} P(S) v(S), from
    # truth.json's inclusion probabilities and conversion rates by channel set
    q, v = truth["inclusion_prob"], truth["conversion_rate_by_set"]
    chans = list(q)
    through = dict.fromkeys(chans, 0.0)
    for key, rate in v.items():
        s = set() if key == "(none)" else set(key.split("|"))
        p = math.prod(q[c] if c in s else 1 - q[c] for c in chans)
        for c in s:
            through[c] += p * rate
    tot = sum(through.values())
    for order in (1, 3):
        m = at.MarkovAttribution(order=order).fit(sample_touches)
        share = m.attribution_.set_index("channel")["share"]
        for c in chans:
            assert abs(share[c] - through[c] / tot) <= TOL, (order, c, share[c], through[c] / tot)
    # and it is NOT the counterfactual (noisy-OR) removal effect: social_ad is over-credited
    assert share["social_ad"] - truth["removal_effect_share"]["social_ad"] > 0.04


def test_markov_path_column_edge_inputs():
    """Categorical paths work; empty, all-empty, mixed-type paths and bool max_steps are clear errors."""
    MarkovAttribution, AttributionInputError = at.MarkovAttribution, at.AttributionInputError
    paths = pd.DataFrame({"path": ["a>b", "b", "a>c", "c>b"], "conversions": [3, 1, 2, 0], "nulls": [1, 4, 2, 5]})
    plain = MarkovAttribution().fit(paths).attribution_.set_index("channel")["share"]
    cat = MarkovAttribution().fit(paths.assign(path=paths["path"].astype("category")))
    pd.testing.assert_series_equal(cat.attribution_.set_index("channel")["share"], plain)
    with pytest.raises(AttributionInputError, match="0 journeys"):
        MarkovAttribution().fit(paths.iloc[:0])
    with pytest.raises(AttributionInputError, match="no channel at all"):
        MarkovAttribution().fit(paths.assign(path=""))
    with pytest.raises(AttributionInputError, match="strings expected"):
        MarkovAttribution().fit(paths.assign(path=pd.Series(["a>b", 3, "c", "b"], dtype=object)))
    with pytest.raises(AttributionInputError, match="max_steps"):
        MarkovAttribution(max_steps=True)
