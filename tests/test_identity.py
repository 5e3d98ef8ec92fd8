"""Identity resolution: normalisation, bad input, quality against the planted truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omni_lib import identity as idn
from omni_lib.privacy import EMAIL_PATTERN, PHONE_PATTERN, pseudonymise


def _ids(rows: list[dict]) -> pd.DataFrame:
    cols = ["record_id", "source", "email", "phone", "full_name", "city", "loyalty_id"]
    df = pd.DataFrame(rows).reindex(columns=cols)
    return df.astype({c: "str" for c in cols})


# --------------------------------------------------------------------------- normalisation
def test_phone_formats_become_one_e164_number():
    spellings = ["0812-3456-7890", "812 3456 7890", "6281234567890", "+62 812-3456-7890",
                 "+6281234567890", "0812 3456 7890", " 0812.3456.7890 ", "(0812) 3456 7890"]
    e164, bad = idn.normalize_phone(pd.Series(spellings, dtype="str"))
    assert set(e164) == {"+6281234567890"} and not bad.any()


def test_malformed_phones_are_flagged_not_guessed():
    s = pd.Series(["0812-34", "08123456789012345", "call me", "+62 812 ABC 999", None, ""], dtype="str")
    e164, bad = idn.normalize_phone(s)
    assert e164.isna().all()
    assert bad.tolist() == [True, True, True, True, False, False]   # missing is not malformed


def test_foreign_number_keeps_its_country_code():
    e164, bad = idn.normalize_phone(pd.Series(["+65 9123 4567", "021-555-1234"], dtype="str"))
    assert e164.tolist() == ["+6591234567", "+62215551234"] and not bad.any()


def test_email_trimmed_lowercased_and_malformed_flagged():
    s = pd.Series([" Adi.Setiawan5698@GMAIL.com ", "budi@@gmail.com", "a..b@x.com", "siti@", "no-at.example.com",
                   None, "ok+tag@mail.co.id"], dtype="str")
    e, bad = idn.normalize_email(s)
    assert e.iloc[0] == "adi.setiawan5698@gmail.com" and e.iloc[6] == "ok+tag@mail.co.id"
    assert bad.tolist() == [False, True, True, True, True, False, False]
    assert e.iloc[1:5].isna().all()


def test_names_lose_titles_case_and_spacing():
    s = pd.Series(["  Bpk. ADI  Setiawan ", "Ibu Nur Hakim", "sdri. ani", "Hj. Siti Aminah", "Ibu", None], dtype="str")
    assert idn.normalize_name(s).tolist()[:5] == ["adi setiawan", "nur hakim", "ani", "siti aminah", "ibu"]
    assert pd.isna(idn.normalize_name(s).iloc[5])


def test_loyalty_ids_normalised():
    assert idn.normalize_loyalty(pd.Series([" tn-1234 5678 ", "TN12345678"], dtype="str")).nunique() == 1


# --------------------------------------------------------------------------- bad input
BAD = [
    {"record_id": "r1", "source": "web", "email": "adi5@gmail.com", "phone": "0812-1111-2222", "full_name": "Adi"},
    {"record_id": "r2", "source": "store", "phone": "+62 812 1111 2222", "loyalty_id": "TN1"},
    {"record_id": "r3", "source": "app", "email": "not-an-email", "full_name": "Budi Santoso"},   # no usable key
    {"record_id": "r4", "source": "whatsapp", "phone": "0812-12", "full_name": "Budi"},             # no usable key
    {"record_id": "r5", "source": "web", "loyalty_id": "tn-1", "full_name": "Adi"},                 # card of r2
    {"record_id": "r5", "source": "web", "email": "adi5@gmail.com"},                               # duplicate id
    {"record_id": "r6", "source": "marketplace", "full_name": "Citra", "city": "Bandung"},          # no usable key
]


def test_bad_input_counted_and_listed():
    prep = idn.prepare(_ids(BAD))
    c = prep.counts
    assert c["records"] == 7 and c["distinct_record_ids"] == 6
    assert c["no_usable_key"] == 3 and c["malformed_email"] == 1 and c["malformed_phone"] == 1
    assert c["duplicate_record_ids"] == 1 and c["duplicate_record_id_rows"] == 2
    problems = prep.issues.groupby("problem")["record_id"].apply(sorted).to_dict()
    assert problems["malformed e-mail"] == ["r3"] and problems["malformed phone"] == ["r4"]
    assert sorted(problems[next(k for k in problems if k.startswith("no usable key"))]) == ["r3", "r4", "r6"]
    assert problems[next(k for k in problems if k.startswith("duplicate"))] == ["r5", "r5"]


def test_nothing_dropped_and_deterministic_links_follow_keys():
    res = idn.IdentityResolver().fit(_ids(BAD))        # tiny: deterministic links only
    assert res.model_skipped_
    lk = res.links_.set_index("record_id")
    assert sorted(lk.index) == ["r1", "r2", "r3", "r4", "r5", "r6"]         # every record id, once
    # r1 ~ r2 (same phone, two spellings), r2 ~ r5 (same card), r5's duplicate row ~ r1 (e-mail)
    assert lk.loc["r1", "customer_id"] == lk.loc["r2", "customer_id"] == lk.loc["r5", "customer_id"]
    assert lk.loc[["r3", "r4", "r6"], "linked_by"].eq("no usable key").all()
    assert lk["customer_id"].nunique() == 4
    assert res.counts_["records_no_usable_key"] == 3


def test_missing_columns_and_empty_table_are_clear_errors():
    with pytest.raises(idn.IdentityInputError, match="source"):
        idn.prepare(pd.DataFrame({"record_id": ["a"]}))
    with pytest.raises(idn.IdentityInputError, match="empty"):
        idn.prepare(_ids([]))


# --------------------------------------------------------------------------- model inputs
def test_records_take_missing_fields_from_their_deterministic_group():
    rows = [
        {"record_id": "w", "source": "whatsapp", "phone": "0812-1111-2222", "city": "Bandung"},
        {"record_id": "s", "source": "store", "phone": "+62 812 1111 2222", "full_name": "Adi Lubis",
         "email": "adi.lubis77@gmail.com"},
        {"record_id": "o", "source": "web", "full_name": "Ani", "city": "Medan"},
    ]
    rec = idn.prepare(_ids(rows)).records
    df = rec.rename(columns={"row": "unique_id"}).assign(email_personal=rec["email_digits"].str.len().gt(0))
    lab = idn._components(len(rec), idn._key_edges(rec, ["record_id", "phone"]))
    out = idn._enrich(df, lab).set_index("record_id")
    assert out.loc["s", "city"] == "bandung"                                  # from the WhatsApp twin
    assert out.loc["w", "name"] == "adi lubis" and out.loc["w", "last_name"] == "lubis"
    assert out.loc["w", "email"] == "adi.lubis77@gmail.com" and out.loc["w", "email_shape"] == "adi.lubis"
    assert out.loc["o", "city"] == "medan" and pd.isna(out.loc["o", "email"])   # no group: unchanged
    assert pd.isna(df.set_index("record_id").loc["s", "city"])                 # input untouched


def test_model_adjustment_removes_sampled_matches_from_u():
    lvl = lambda label, m, u: {"label_for_charts": label, "m_probability": m, "u_probability": u}  # noqa: E731
    model = {"probability_two_random_records_match": 1e-4, "comparisons": [
        {"output_column_name": "email", "comparison_levels": [
            {"label_for_charts": "email is NULL", "is_null_level": True},
            lvl("same address", 0.8, 1e-4), lvl("All other comparisons", 0.2, 0.9999)]},
        {"output_column_name": "phone", "comparison_levels": [
            lvl("Exact match on phone", 0.9, 3e-5), lvl("All other comparisons", 0.0, 0.99997)]},
    ]}
    out = idn._adjust_model(model, max_pairs=1e6)
    email, phone = (c["comparison_levels"] for c in out["comparisons"])
    assert email[1]["u_probability"] == pytest.approx((1e-4 - 1e-4 * 0.8) / (1 - 1e-4))   # 2e-5, not 1e-4
    assert phone[0]["u_probability"] == pytest.approx(5e-7)                 # all matches: floored at half a pair
    assert phone[1]["m_probability"] == idn._PHONE_OTHER_M_FLOOR            # another number is no veto
    assert model["comparisons"][0]["comparison_levels"][1]["u_probability"] == 1e-4   # input untouched
    counted = idn._adjust_model(model, max_pairs=1e6, exact_u={("email", "same address"): 3e-7})
    assert counted["comparisons"][0]["comparison_levels"][1]["u_probability"] == 3e-7


def test_exact_key_u_counted_within_sources():
    df = pd.DataFrame({
        "source": ["web", "web", "web", "app", "app"],
        "email": ["a1@x.com", "a1@x.com", "b@x.com", "a1@x.com", "c@x.com"],
        "email_user": ["a1", "a1", "b", "a1", "c"],
        "email_personal": [True, True, False, True, False],
        "phone": ["+62811", "+62812", None, "+62811", "+62813"],
        "loyalty": [None] * 5,
        "given": ["adi", "adi", "budi", "adi", "citra"],
        "household_phone": [False] * 5,
    })
    u = idn._same_source_u(df)
    # web: 3 pairs with e-mails, 1 shares a personal address; app: 1 pair, none; the web/app
    # pairs that share a1@x.com may be one person and are not counted
    assert u[("email", "same address with a personal number")] == pytest.approx((1 + 0.5) / 4)
    assert u[("email", "same name-only address")] == pytest.approx(0.5 / 4)
    assert u[("phone", "Exact match on phone")] == pytest.approx(0.5 / 2)   # web 1 pair, app 1 pair
    assert ("loyalty", "Exact match on loyalty") not in u


def test_term_frequencies_count_groups_and_leave_the_pair_out():
    df = pd.DataFrame({"name": ["adi", "adi", "adi", "budi", "budi", "sari", None]})
    groups = np.array([0, 0, 1, 2, 3, 4, 5])        # rows 0 and 1 share a phone: one group
    tf = idn._tf_table(df, groups, "name").set_index("name")["tf_name"]
    # groups holding each name: adi 2 (not 3 records), budi 2, sari 1; 5 in all. A pair
    # sharing 'adi' is two of its two groups: nobody else has it, so only the half remains
    assert tf["adi"] == pytest.approx(0.5 / 5) and tf["budi"] == pytest.approx(0.5 / 5)
    assert tf["sari"] == pytest.approx(0.5 / 5)
    many = idn._tf_table(pd.DataFrame({"name": ["x"] * 6 + ["y"] * 2}), np.arange(8), "name")
    assert many.set_index("name").loc["x", "tf_name"] == pytest.approx((6 - 2 + 0.5) / 8)


def test_source_pair_m_by_inverse_probability_of_a_phone():
    # web records a phone half as often as app; both app/web pairs and app/store pairs are
    # seen sharing one twice, so app/web pairs must be twice as common among one person's
    df = pd.DataFrame({
        "source": ["app", "web", "app", "web", "web", "web", "app", "store", "app", "store"],
        "phone": ["p1", "p1", "p2", "p2", None, None, "p3", "p3", "p4", "p4"],
    })
    m = idn._source_pair_m(df, 0.01)
    assert set(m) == {"sources app and store", "sources app and web", "sources store and web"}
    assert sum(m.values()) == pytest.approx(0.99)
    # weights: app/web (2 + 0.5) / (1 * 0.5) = 5, app/store 2.5 / 1 = 2.5, store/web 0.5 / 0.5 = 1
    assert m["sources app and web"] == pytest.approx(0.99 * 5 / 8.5)
    assert m["sources app and store"] == pytest.approx(0.99 * 2.5 / 8.5)
    assert m["sources store and web"] == pytest.approx(0.99 * 1 / 8.5)
    # a source that never records a phone: its pairs cannot be counted, EM's values stay
    assert idn._source_pair_m(df.assign(phone=np.where(df["source"] == "store", None, df["phone"])), 0.01) == {}


# --------------------------------------------------------------------------- quality maths
def test_term_frequency_columns_of_a_model():
    model = {"comparisons": [
        {"comparison_levels": [{"tf_adjustment_column": "email"}, {"label_for_charts": "x"}]},
        {"comparison_levels": [{"tf_adjustment_column": "name"}, {"tf_adjustment_column": "email"}]}]}
    assert idn._tf_columns(model) == ["email", "name"]


def test_pairwise_quality_by_hand():
    truth = pd.DataFrame({"record_id": list("abcde"), "customer_id": ["T1", "T1", "T1", "T2", "T3"]})
    pred = pd.DataFrame({"record_id": list("abcde"), "customer_id": ["P1", "P1", "P2", "P2", "P3"]})
    q = idn.pairwise_quality(pred, truth)
    # predicted pairs ab, cd; true pairs ab, ac, bc; correct ab
    assert (q["pairs_predicted"], q["pairs_true"], q["pairs_correct"]) == (2, 3, 1)
    assert q["precision"] == pytest.approx(0.5) and q["recall"] == pytest.approx(1 / 3)
    assert q["f1"] == pytest.approx(0.4)
    assert q["purity"] == pytest.approx(4 / 5)          # P1 pure (2), P2 majority 1 of 2, P3 pure (1)
    assert q["inverse_purity"] == pytest.approx(4 / 5)  # T1 split 2+1, T2, T3 whole
    perfect = idn.pairwise_quality(truth, truth)
    assert perfect["f1"] == 1.0 and perfect["purity"] == 1.0


# --------------------------------------------------------------------------- the unified view
LINKS = pd.DataFrame({
    "record_id": ["a", "b", "c", "d", "e", "f"],
    "source": ["web", "store", "web", "app", "store", "web"],
    "customer_id": ["U1", "U1", "U2", "U2", "U3", "U4"],
    "linked_by": ["deterministic"] * 4 + ["not linked", "no usable key"],
})


def test_channel_overlap_and_match_rates():
    ov = idn.channel_overlap(LINKS).set_index("channels")
    assert ov["customers"].to_dict() == {"app+web": 1, "store+web": 1, "store": 1, "web": 1}
    mr = idn.match_rates(LINKS)
    assert mr.loc["web", "records"] == 3 and mr.loc["web", "linked"] == pytest.approx(2 / 3)
    assert mr.loc["web", "no_usable_key"] == 1 and mr.loc["store", "linked_to_other_channel"] == 0.5


def test_omnichannel_comparison_spend_and_retention():
    tz = "Asia/Jakarta"
    orders = pd.DataFrame({
        "record_id": ["a", "b", "c", "e", "e"],
        "order_ts": pd.to_datetime(["2025-01-01", "2026-06-01", "2025-01-01", "2025-01-01", "2025-02-01"]).tz_localize(tz),
        "net_amount": [100.0, 300.0, 50.0, 10.0, 20.0],
        "status": ["completed", "completed", "completed", "completed", "cancelled"],
    })
    per, summary = idn.omnichannel_comparison(LINKS, orders, pd.Timestamp("2026-06-30", tz=tz), retention_days=180)
    assert per.loc["U1", "spend"] == 400.0 and per.loc["U3", "spend"] == 10.0       # cancelled not spend
    assert summary.loc["omnichannel", "customers"] == 2 and summary.loc["single channel", "customers"] == 2
    assert summary.loc["omnichannel", "retention_rate"] == 0.5      # U1 came back, U2 did not
    assert summary.loc["single channel", "retention_rate"] == 0.0   # U3 did not; U4 never bought


def test_consent_of_unified_customers():
    orders = pd.DataFrame({"record_id": ["a", "b", "c", "e"], "customer_id": ["C1", "C1", "C2", "C3"]})
    customers = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "consent_analytics": [True, False, pd.NA]})
    consent, info = idn.consent_by_unified_customer(LINKS, orders, customers)
    assert consent.to_dict() == {"U1": True, "U2": False, "U3": False, "U4": False}
    assert (info["no_consent"], info["unknown"], info["excluded"]) == (2, 1, 3)


# --------------------------------------------------------------------------- the sample retailer
@pytest.fixture(scope="module")
def fitted(sample_dir):
    ids = pd.read_parquet(sample_dir / "identities.parquet")
    truth = pd.read_parquet(sample_dir / "truth" / "identity_links.parquet")
    res = idn.IdentityResolver(key=b"test-key-0123456789abcdef").fit(ids)
    return res, ids, truth


def test_quality_against_planted_truth(fitted):
    res, ids, truth = fitted
    q = idn.pairwise_quality(res.links_, truth)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in q.items()})
    assert q["records"] == len(ids) and q["records_missing"] == 0
    # the issue's target: F1 >= 0.95 on the default sample (issue 6: 0.9512, precision
    # 0.9927, recall 0.9131; issue 19, which made the model hold on other mixes
    # (tests/test_identity_scenarios.py): 0.9507, precision 0.987, recall 0.917: rare
    # full names are compared whatever the city, which finds pairs and some namesakes)
    assert q["f1"] >= 0.95
    assert q["precision"] >= 0.985 and q["recall"] >= 0.91 and q["purity"] >= 0.99
    # the model's own estimate, without labels, within 0.05 of the truth
    assert abs(res.quality_["f1"] - q["f1"]) <= 0.05


def test_source_pair_m_recovers_the_planted_channel_mix(fitted, sample_dir):
    """Without labels, the m of each pair of sources is the share of one person's pairs
    of records that fall on those two sources in the planted truth."""
    res, ids, truth = fitted
    lv = {lvl["label_for_charts"]: lvl["m_probability"] for c in res.model_["comparisons"]
          if c["output_column_name"] == "source" for lvl in c["comparison_levels"]
          if lvl.get("label_for_charts", "").startswith("sources ")}
    t = ids[["record_id", "source"]].merge(truth[["record_id", "customer_id"]], on="record_id")
    p = t.merge(t, on="customer_id")
    p = p[p["source_x"] < p["source_y"]]
    share = (p["source_x"] + " and " + p["source_y"]).value_counts() / len(p)
    assert len(lv) == 10
    for label, m in lv.items():
        assert m == pytest.approx(share.get(label[len("sources "):], 0.0), abs=0.006), label


def test_no_usable_key_matches_the_truth_count(fitted):
    res, ids, truth = fitted
    assert res.counts_["no_usable_key"] == int(truth["no_usable_key"].sum())


def test_links_carry_pseudonyms_never_raw_values(fitted):
    res, ids, truth = fitted
    lk = res.links_
    assert not {"email", "phone", "full_name", "name", "loyalty_id"} & set(lk.columns)
    text = lk.astype(str).to_csv(index=False)
    assert not EMAIL_PATTERN.search(text) and not PHONE_PATTERN.search(text)
    one = ids.dropna(subset=["email"]).iloc[0]
    expected = pseudonymise(pd.Series([one["email"].strip().lower()], dtype="str"), b"test-key-0123456789abcdef")
    assert lk.set_index("record_id").loc[one["record_id"], "email_pseudonym"] == expected.iloc[0]
    pairs_text = res.borderline_pairs(50).astype(str).to_csv(index=False)
    assert not EMAIL_PATTERN.search(pairs_text) and not PHONE_PATTERN.search(pairs_text)


def test_same_phone_in_two_spellings_is_one_customer(fitted):
    res, ids, truth = fitted
    e164, _ = idn.normalize_phone(ids["phone"])
    shared = e164[e164.duplicated(keep=False) & e164.notna()]
    groups = ids.loc[shared.index, ["record_id"]].assign(p=shared.to_numpy())
    groups = groups.merge(res.links_[["record_id", "customer_id"]], on="record_id")
    assert len(groups) > 100 and groups.groupby("p")["customer_id"].nunique().eq(1).all()


def test_recluster_threshold_trades_precision_for_recall(fitted):
    res, ids, truth = fitted
    strict = idn.pairwise_quality(res.recluster(0.9), truth)
    loose = idn.pairwise_quality(res.recluster(0.02), truth)
    assert strict["precision"] > loose["precision"] and strict["recall"] < loose["recall"]


def test_resolution_is_reproducible(sample_dir, fitted):
    res, ids, truth = fitted
    sub = ids.iloc[: len(ids) // 2]
    a = idn.IdentityResolver(seed=7).fit(sub).links_
    b = idn.IdentityResolver(seed=7).fit(sub).links_
    pd.testing.assert_frame_equal(a, b)


def test_prepare_keeps_rows_aligned_on_a_large_table():
    # DuckDB plans some expressions as joins (a long NOT IN list was one), which reorder
    # rows under parallel execution on large inputs: every normalised value must stay on
    # its own row (found at 400,000 records, where F1 fell to 0.02)
    n = 300_000
    i = np.arange(n)
    ids = pd.DataFrame({"record_id": pd.Series(i).astype(str).radd("r").to_numpy(),
                        "source": np.where(i % 2 == 0, "web", "app"),
                        "email": pd.Series(i).astype(str).radd("User").add("@Mail.com").to_numpy(),
                        "full_name": np.where(i % 3 == 0, "Ibu Siti", "Budi")}).astype("str")
    rec = idn.prepare(ids).records
    assert (rec["email"].to_numpy() == ("user" + pd.Series(i).astype(str) + "@mail.com").to_numpy()).all()
    assert (rec["given"].to_numpy() == np.where(i % 3 == 0, "siti", "budi")).all()
    assert (idn.normalize_email(ids["email"])[0].to_numpy() == rec["email"].to_numpy()).all()
