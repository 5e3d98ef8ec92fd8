"""Seeded sample data: "Toko Nusantara", an Indonesian omnichannel retailer.

``generate()`` writes the nine contract tables (``docs/contract.md``) as Parquet
files plus ``meta.json`` and a ``truth/`` folder holding the planted ground truth
that the analyses must recover (segments, BG/NBD rates and dropout, identity links,
channel contributions, journey patterns, app cannibalisation, experiment effects,
price mismatches, ...).  ``truth/truth.json`` documents every planted quantity.

Design rules

* Everything is vectorised with numpy / pyarrow: no Python loop over customers,
  orders or events (loops over channels, segments, experiments and chunks only).
* Customers are processed in chunks of a fixed size (``CHUNK_SIZE``); chunk ``i``
  draws from its own ``SeedSequence`` child, so the output depends only on
  ``(seed, n_customers)`` and memory stays bounded for millions of customers.
* Output is deterministic: same seed and size -> byte-identical files (no wall-clock
  time anywhere, fixed Parquet writer options).
* Files are written to a temporary folder and moved into place at the end.

Time is handled internally as float days since 2024-07-01 00:00 Asia/Jakarta;
timestamps are written as ``timestamp[us, tz=Asia/Jakarta]`` rounded to seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from datetime import date, datetime, timedelta
from itertools import combinations
from math import factorial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

GENERATOR_VERSION = "2.0.0"   # 1.1: a second SIM's operator drawn independently; 1.2: so is a second e-mail's number;
# 2.0: siloed, as real exports are: orders, touchpoints, surveys, tickets and experiments name the channel
# record (identities.record_id), never the person; no customers table (the person lives in truth/ only)

DEFAULTS = {
    "out_dir": "data/sample",
    "n_customers": 20_000,
    "seed": 42,
    "chunk_size": 50_000,
    "company": "Toko Nusantara",
    "timezone": "Asia/Jakarta",
    "currency": "IDR",
    "period_start": "2024-07-01",
    "period_end": "2026-06-30",
    "data_end": "2026-06-30 23:59:59",
    "app_launch": "2025-07-01",
    "churn_window_start": "2026-01-01",
    "pre_period_days": 90,
    "journey_lookback_days": 7,
}

TZ = DEFAULTS["timezone"]
CHUNK_SIZE = DEFAULTS["chunk_size"]
TABLES = ("identities", "orders", "touchpoints", "surveys", "tickets",
          "experiments", "spend", "prices")  # siloed: no customers table (see GENERATOR_VERSION 2.0)


def _day(iso: str) -> float:
    return float((date.fromisoformat(iso) - date.fromisoformat(DEFAULTS["period_start"])).days)


T_END = _day("2026-07-01")                  # 730.0 days; data_end = T_END - 1 second
LAST_SEC = T_END - 1.0 / 86400.0
LAUNCH = _day(DEFAULTS["app_launch"])       # 365.0
CHURN_START = _day(DEFAULTS["churn_window_start"])
_START_UTC = datetime(2024, 7, 1) - timedelta(hours=7)
START_US = int((_START_UTC - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
TS_TYPE = pa.timestamp("us", tz=TZ)

# ----------------------------------------------------------------------------- vocab
CHANNELS = ("web", "app", "marketplace", "store", "whatsapp", "call_center", "live_chat",
            "email", "social_ad", "search", "direct")
CH = {c: i for i, c in enumerate(CHANNELS)}
SALES = ("web", "app", "marketplace", "store", "whatsapp")        # order channels
SW, SA, SM, SS, SWA = range(5)
SALES_CH = np.array([CH[c] for c in SALES])
MKT = ("email", "social_ad", "search", "direct", "whatsapp")      # journey channels
MKT_CH = np.array([CH[c] for c in MKT])
SERVICE = ("whatsapp", "call_center", "live_chat", "email")
SERVICE_CH = np.array([CH[c] for c in SERVICE])
EVENT_TYPES = ("impression", "click", "visit", "product_view", "add_to_cart", "checkout",
               "inquiry", "purchase", "review")
EV = {e: i for i, e in enumerate(EVENT_TYPES)}

SEGMENTS = (
    # mix over SALES (web, app, marketplace, store, whatsapp); acq = acquisition-time profile
    dict(name="omnichannel_loyalist", share=0.12, mix=(0.28, 0.27, 0.04, 0.29, 0.12), conc=80.0,
         lam=0.045, lam_shape=6.0, p=0.025, p_conc=60.0, spend=800_000, disc=0.08, ret=0.05,
         tick=0.09, nps=9.0, items=2.4, robo=0.30, show=0.15, s2s=0.10,
         service=(0.45, 0.20, 0.20, 0.15), survey=0.10, acq="early"),
    dict(name="online_bargain_hunter", share=0.20, mix=(0.70, 0.03, 0.27, 0.0, 0.0), conc=80.0,
         lam=0.030, lam_shape=5.0, p=0.04, p_conc=60.0, spend=150_000, disc=0.90, ret=0.22,
         tick=0.10, nps=6.2, items=1.6, robo=0.08, show=0.06, s2s=0.05,
         service=(0.30, 0.15, 0.35, 0.20), survey=0.08, acq="early"),
    dict(name="store_regular", share=0.20, mix=(0.02, 0.0, 0.0, 0.96, 0.02), conc=80.0,
         lam=0.024, lam_shape=5.0, p=0.035, p_conc=60.0, spend=350_000, disc=0.03, ret=0.03,
         tick=0.04, nps=8.3, items=2.0, robo=0.12, show=0.05, s2s=0.08,
         service=(0.30, 0.55, 0.05, 0.10), survey=0.08, acq="early"),
    dict(name="marketplace_occasional", share=0.17, mix=(0.04, 0.0, 0.96, 0.0, 0.0), conc=80.0,
         lam=0.009, lam_shape=4.0, p=0.10, p_conc=30.0, spend=160_000, disc=0.35, ret=0.10,
         tick=0.06, nps=5.4, items=1.3, robo=0.05, show=0.03, s2s=0.0,
         service=(0.30, 0.10, 0.40, 0.20), survey=0.06, acq="early"),
    dict(name="app_first_young_urban", share=0.13, mix=(0.12, 0.85, 0.03, 0.0, 0.0), conc=80.0,
         lam=0.030, lam_shape=5.0, p=0.05, p_conc=60.0, spend=200_000, disc=0.30, ret=0.08,
         tick=0.12, nps=7.5, items=1.5, robo=0.10, show=0.08, s2s=0.0,
         service=(0.35, 0.05, 0.55, 0.05), survey=0.08, acq="app"),
    dict(name="dormant_one_timer", share=0.18, mix=(1.0, 0.0, 0.0, 0.0, 0.0), conc=50.0,
         lam=0.0003, lam_shape=3.0, p=0.80, p_conc=5.0, spend=280_000, disc=0.30, ret=0.05,
         tick=0.03, nps=4.0, items=1.4, robo=0.0, show=0.0, s2s=0.0,
         service=(0.20, 0.30, 0.10, 0.40), survey=0.06, acq="first_year"),
)
SEG_NAMES = tuple(s["name"] for s in SEGMENTS)
NSEG = len(SEGMENTS)
APPF = SEG_NAMES.index("app_first_young_urban")
_SP = {k: np.array([s[k] for s in SEGMENTS], dtype=float)
       for k in ("share", "conc", "lam", "lam_shape", "p", "p_conc", "spend", "disc", "ret",
                 "tick", "nps", "items", "robo", "show", "s2s", "survey")}
_SP["mix"] = np.array([s["mix"] for s in SEGMENTS], dtype=float)
_SP["service"] = np.array([s["service"] for s in SEGMENTS], dtype=float)
GG_P, GG_Q = 4.0, 6.0
ACQ_SLOPE = 0.75               # acquisition density 1 - ACQ_SLOPE * t / T
FIRST_YEAR_DAYS = 300.0
APP_PRE_LAUNCH_SHARE = 0.08   # app-first customers acquired (on web) before the launch        # dormant one-timers are acquired in the first 300 days          # Gamma-Gamma spend model: z ~ Gamma(p, nu), nu ~ Gamma(q, gamma)

# funnel continuation probabilities: visit->product_view->add_to_cart->checkout->purchase
FUNNEL = {
    "web": (0.88, 0.60, 0.80, 0.85),
    "app": (0.92, 0.65, 0.85, 0.90),
    "marketplace": (0.90, 0.55, 0.80, 0.88),
}
ANON_SHARE = {"web": 0.35, "app": 0.05, "marketplace": 0.45}   # failed sessions not logged in
FAILED_SESSION_LEAD_DAYS = 2.0

# Noisy-OR conversion model of marketing journeys (online orders)
JOURNEY = {
    "base_rate": 0.03,
    "w": {"email": 0.25, "social_ad": 0.18, "search": 0.40, "direct": 0.45, "whatsapp": 0.35},
    "inclusion_prob": {"email": 0.35, "social_ad": 0.30, "search": 0.25, "direct": 0.20,
                       "whatsapp": 0.10},
    "position_exponent": {"email": 1.0, "social_ad": 0.5, "search": 1.0, "direct": 3.0,
                          "whatsapp": 1.2},
}
CAMPAIGNS_BY_MKT = {
    "email": (("newsletter_mingguan", 0.5), ("promo_gajian", 0.3), ("flash_sale_email", 0.2)),
    "social_ad": (("ig_always_on", 0.5), ("tiktok_flash_sale", 0.3), ("fb_retargeting", 0.2)),
    "search": (("google_brand", 0.55), ("google_generic", 0.45)),
    "direct": ((None, 1.0),),
    "whatsapp": (("wa_broadcast_promo", 0.7), ("wa_restock_alert", 0.3)),
}
MKT_EVENT = {"email": "click", "social_ad": "click", "search": "click", "direct": "visit",
             "whatsapp": "click"}
SOCIAL_IMPRESSION_SHARE = 0.4   # share of social_ad touches that are view-through impressions
# paid-media cost model for the spend table (IDR). multiplier = untracked audience scale.
SPEND_MODEL = {   # campaign: (channel, fixed IDR per day per 20k customers, cost per tracked click, multiplier)
    "ig_always_on": ("social_ad", 200_000, 1_800, 6.0),
    "tiktok_flash_sale": ("social_ad", 120_000, 1_500, 6.0),
    "fb_retargeting": ("social_ad", 60_000, 2_200, 3.0),
    "google_brand": ("search", 50_000, 1_200, 2.0),
    "google_generic": ("search", 150_000, 3_500, 3.0),
    "newsletter_mingguan": ("email", 20_000, 60, 1.0),
    "promo_gajian": ("email", 15_000, 60, 1.0),
    "flash_sale_email": ("email", 10_000, 60, 1.0),
    "wa_broadcast_promo": ("whatsapp", 15_000, 450, 1.0),
    "wa_restock_alert": ("whatsapp", 8_000, 450, 1.0),
    "mp_sponsored_ads": ("marketplace", 80_000, 0.035, 0.0),   # + share of marketplace revenue
}

EXPERIMENTS = (
    dict(id="EXP01_email_subject", name="E-mail subject line: personal vs generic",
         channel="email", start="2025-10-06", enroll_days=0.0, window_days=7, base=0.22,
         variants=(("A", 0.5, 0.0), ("B", 0.5, 0.15)), elig="email", frac=1.0,
         metric="purchase"),
    dict(id="EXP02_cta_button", name="Product page CTA button colour", channel="web",
         start="2025-04-07", enroll_days=21.0, window_days=14, base=0.12,
         variants=(("A", 0.5, 0.0), ("B", 0.5, 0.0)), elig="web", frac=0.8, metric="purchase"),
    dict(id="EXP03_checkout_flow", name="Checkout flow: current vs one-page vs multi-step",
         channel="web", start="2025-09-01", enroll_days=28.0, window_days=1, base=0.55,
         variants=(("A", 0.4, 0.0), ("B", 0.3, 0.08), ("C", 0.3, -0.03)), elig="web", frac=0.9,
         metric="purchase"),
    dict(id="EXP04_personalised_offer", name="Personalised offer in the app", channel="app",
         start="2025-11-03", enroll_days=14.0, window_days=14, base=0.14,
         variants=(("A", 0.5, 0.0), ("B", 0.5, 0.25)), elig="app", frac=1.0,
         return_rate={"A": 0.07, "B": 0.22}, metric="purchase"),
    dict(id="EXP05_landing_page", name="New campaign landing page", channel="web",
         start="2026-01-12", enroll_days=14.0, window_days=7, base=0.09,
         variants=(("A", 0.5, 0.0), ("B", 0.5, 0.0)), elig="online", frac=1.0,
         srm_realised_share_A=0.53, metric="purchase"),
    dict(id="EXP06_abandoned_cart", name="Abandoned-cart workflow (1h reminder, 24h discount, 48h service offer)",
         channel="web", start="2026-03-02", enroll_days=42.0, window_days=7, base=0.10,
         variants=(("A", 0.5, 0.0), ("B", 0.5, 0.30)), elig="online", frac=0.6,
         steps=(("reminder_email", 1.0 / 24, "email", 0.45), ("discount_whatsapp", 1.0, "whatsapp", 0.35),
                ("service_offer_live_chat", 2.0, "live_chat", 0.20)),
         step_discount=0.10, metric="purchase"),
)
EXP_IDS = tuple(e["id"] for e in EXPERIMENTS)

CAMPAIGNS = tuple(sorted({c for v in CAMPAIGNS_BY_MKT.values() for c, _ in v if c})) + EXP_IDS
CAMP = {c: i for i, c in enumerate(CAMPAIGNS)}

STORES = (
    ("ST-KBS", "Toko Nusantara Kebon Sirih", "Jakarta Pusat"),
    ("ST-GIN", "Toko Nusantara Grand Indonesia", "Jakarta Pusat"),
    ("ST-AEB", "Toko Nusantara AEON Mall BSD City", "Tangerang Selatan"),
    ("ST-KKG", "Toko Nusantara Mal Kelapa Gading", "Jakarta Utara"),
    ("ST-PVJ", "Toko Nusantara Paris Van Java Bandung", "Bandung"),
    ("ST-PKS", "Toko Nusantara Pakuwon Mall Surabaya", "Surabaya"),
    ("ST-MDN", "Toko Nusantara Sun Plaza Medan", "Medan"),
    ("ST-DPS", "Toko Nusantara Beachwalk Bali", "Badung"),
)
STORE_IDS = tuple(s[0] for s in STORES)
_ST = {s: i for i, s in enumerate(STORE_IDS)}
# city, region, weight, home store, second store (same metro) or None
CITIES = (
    ("Jakarta Pusat", "DKI Jakarta", 0.05, "ST-KBS", "ST-GIN"),
    ("Jakarta Selatan", "DKI Jakarta", 0.09, "ST-GIN", "ST-KBS"),
    ("Jakarta Barat", "DKI Jakarta", 0.06, "ST-GIN", "ST-KBS"),
    ("Jakarta Timur", "DKI Jakarta", 0.05, "ST-KKG", "ST-KBS"),
    ("Jakarta Utara", "DKI Jakarta", 0.04, "ST-KKG", "ST-GIN"),
    ("Tangerang Selatan", "Banten", 0.05, "ST-AEB", "ST-GIN"),
    ("Tangerang", "Banten", 0.04, "ST-AEB", "ST-KBS"),
    ("Bekasi", "Jawa Barat", 0.06, "ST-KKG", "ST-KBS"),
    ("Depok", "Jawa Barat", 0.04, "ST-KBS", "ST-AEB"),
    ("Bogor", "Jawa Barat", 0.03, "ST-KBS", "ST-AEB"),
    ("Bandung", "Jawa Barat", 0.08, "ST-PVJ", None),
    ("Surabaya", "Jawa Timur", 0.08, "ST-PKS", None),
    ("Sidoarjo", "Jawa Timur", 0.02, "ST-PKS", None),
    ("Malang", "Jawa Timur", 0.02, "ST-PKS", None),
    ("Medan", "Sumatera Utara", 0.05, "ST-MDN", None),
    ("Denpasar", "Bali", 0.03, "ST-DPS", None),
    ("Semarang", "Jawa Tengah", 0.04, None, None),
    ("Yogyakarta", "DI Yogyakarta", 0.03, None, None),
    ("Makassar", "Sulawesi Selatan", 0.03, None, None),
    ("Palembang", "Sumatera Selatan", 0.03, None, None),
    ("Balikpapan", "Kalimantan Timur", 0.02, None, None),
)
_CITY_W = np.array([c[2] for c in CITIES]) / sum(c[2] for c in CITIES)
_CITY_HOME = np.array([_ST[c[3]] if c[3] else -1 for c in CITIES])
_CITY_ALT = np.array([_ST[c[4]] if c[4] else -1 for c in CITIES])
_CITY_W_STORE = np.where(_CITY_HOME >= 0, _CITY_W, 0.0)
_CITY_W_STORE = _CITY_W_STORE / _CITY_W_STORE.sum()

FIRST_M = ("Budi", "Agus", "Andi", "Rizky", "Dimas", "Fajar", "Hendra", "Joko", "Bambang",
           "Dedi", "Eko", "Arief", "Yoga", "Bayu", "Reza", "Teguh", "Wahyu", "Ilham", "Irfan",
           "Kevin", "Gilang", "Hadi", "Yusuf", "Fikri", "Adi", "Rudi", "Surya", "Taufik",
           "Hendrik", "Steven", "Michael", "Daniel", "Putu", "Made", "Ketut", "Aditya",
           "Rangga", "Farhan", "Galih", "Rian")
FIRST_F = ("Siti", "Dewi", "Ayu", "Putri", "Rina", "Sri", "Indah", "Fitri", "Nur", "Wulan",
           "Lestari", "Ratna", "Intan", "Maya", "Dian", "Nadia", "Anisa", "Aulia", "Citra",
           "Mega", "Rahma", "Yuni", "Eka", "Novi", "Sari", "Tiara", "Kartika", "Amelia",
           "Cindy", "Jessica", "Nabila", "Salsabila", "Febri", "Melati", "Dinda", "Laras",
           "Wayan", "Kadek", "Zahra", "Vina")
LAST = ("Pratama", "Saputra", "Wijaya", "Santoso", "Hidayat", "Kusuma", "Siregar",
        "Nasution", "Simanjuntak", "Halim", "Gunawan", "Setiawan", "Permana", "Nugroho",
        "Wibowo", "Susanto", "Lubis", "Harahap", "Purba", "Sitompul", "Rahman", "Hakim",
        "Syahputra", "Lestari", "Anggraini", "Maharani", "Wulandari", "Rahayu", "Handoko",
        "Salim", "Tanjung", "Ginting", "Tarigan", "Manurung", "Panjaitan", "Hutapea",
        "Sembiring", "Kurniawan", "Firmansyah", "Ramadhan", "Hartono", "Tanoto", "Sutanto",
        "Budiman", "Suryadi", "Prasetyo", "Utomo", "Hasibuan", "Daulay", "Sinaga")
TITLES_M = ("Bpk.", "Bapak", "Pak", "Sdr.")
TITLES_F = ("Ibu", "Ibu", "Bu", "Sdri.")
EMAIL_DOMAINS = (("gmail.com", 0.62), ("yahoo.com", 0.10), ("yahoo.co.id", 0.08),
                 ("hotmail.com", 0.06), ("outlook.com", 0.06), ("ymail.com", 0.03),
                 ("icloud.com", 0.05))
PHONE_PREFIX = ("811", "812", "813", "821", "822", "823", "852", "853", "814", "815", "816",
                "855", "856", "857", "858", "817", "818", "819", "859", "877", "878", "895",
                "896", "897", "898", "899", "881", "882", "883", "888")
#: spawn key of the stream that draws the operator of a second SIM (see _identity_table)
_ALT_SIM_STREAM = 7301
_ALT_EMAIL_STREAM = 7302
PHONE_FORMATS = (0.38, 0.08, 0.16, 0.12, 0.10, 0.08, 0.08)   # see _phone_format
SOURCE_MISSING = {   # per record source: P(email missing), P(phone missing), P(name missing)
    "web": (0.00, 0.35, 0.03), "app": (0.04, 0.08, 0.05), "marketplace": (0.35, 0.15, 0.05),
    "store": (0.45, 0.06, 0.04), "whatsapp": (0.85, 0.00, 0.30),
}
NO_KEY_SHARE = 0.006

AWARENESS = {   # category -> raw Indonesian answers to "Dari mana anda mengetahui tentang produk kami?"
    "social_media": ("Instagram", "dari IG", "TikTok", "Facebook", "iklan di Instagram",
                     "lihat di TikTok"),
    "search_engine": ("Google", "cari di google", "googling", "dari pencarian Google"),
    "friends_family": ("teman", "dikasih tau teman", "keluarga", "rekomendasi teman", "saudara"),
    "store": ("lewat toko", "lihat tokonya di mall", "mampir ke toko", "jalan-jalan di mall"),
    "marketplace": ("Tokopedia", "Shopee", "dari marketplace", "Lazada"),
    "messaging": ("WA", "broadcast WhatsApp", "email promo", "dari grup WA"),
    "tv_print": ("iklan TV", "baliho", "majalah"),
    "other": ("lupa", "-", "tidak ingat", "lainnya"),
}
AW_CATS = tuple(AWARENESS)
# P(awareness category | acquisition channel)
_AW_BY_ACQ = {
    "social_ad": (0.70, 0.04, 0.12, 0.02, 0.02, 0.02, 0.03, 0.05),
    "search": (0.08, 0.62, 0.12, 0.03, 0.05, 0.02, 0.03, 0.05),
    "email": (0.10, 0.10, 0.20, 0.05, 0.05, 0.40, 0.03, 0.07),
    "whatsapp": (0.08, 0.05, 0.30, 0.05, 0.02, 0.45, 0.00, 0.05),
    "direct": (0.20, 0.20, 0.30, 0.10, 0.05, 0.03, 0.05, 0.07),
    "web": (0.20, 0.25, 0.28, 0.07, 0.05, 0.03, 0.05, 0.07),
    "app": (0.45, 0.10, 0.25, 0.03, 0.05, 0.02, 0.03, 0.07),
    "marketplace": (0.08, 0.05, 0.12, 0.02, 0.65, 0.01, 0.02, 0.05),
    "store": (0.04, 0.03, 0.25, 0.55, 0.02, 0.01, 0.05, 0.05),
}
NPS_CHANNEL_EFFECT = {"web": 0.0, "app": 0.3, "marketplace": -0.6, "store": 0.4, "whatsapp": 0.2,
                      "call_center": -0.3, "live_chat": 0.1, "email": -0.5}
TICKET_FCR = {"whatsapp": 0.70, "call_center": 0.76, "live_chat": 0.72, "email": 0.58}
TICKET_RESPONSE_MEDIAN_MIN = {"whatsapp": 25.0, "call_center": 4.0, "live_chat": 2.0,
                              "email": 360.0}
TICKET_TOPICS = ("pengiriman", "pengembalian", "pembayaran", "info_produk", "promo_voucher",
                 "akun")

PRODUCTS = (("Kemeja Batik Pria", 250_000, 650_000), ("Blus Batik Wanita", 200_000, 550_000),
            ("Kaos Katun Combed", 79_000, 149_000), ("Celana Chino", 199_000, 399_000),
            ("Rok Plisket", 129_000, 259_000), ("Gamis Katun", 249_000, 599_000),
            ("Hijab Voal Premium", 69_000, 159_000), ("Sepatu Sneakers", 399_000, 999_000),
            ("Sandal Kulit", 149_000, 349_000), ("Tas Ransel Kanvas", 249_000, 549_000),
            ("Tas Selempang Kulit", 299_000, 899_000), ("Dompet Kulit", 149_000, 399_000),
            ("Jaket Denim", 349_000, 749_000), ("Sarung Tenun", 199_000, 699_000),
            ("Jam Tangan Kasual", 499_000, 1_500_000), ("Kain Songket", 750_000, 3_000_000),
            ("Topi Baseball", 79_000, 149_000), ("Kacamata Hitam", 199_000, 599_000),
            ("Parfum Lokal 50ml", 149_000, 399_000), ("Kemeja Linen", 229_000, 459_000))
COLOURS = ("Hitam", "Navy", "Putih", "Maroon", "Sogan", "Abu-abu")
PRICE_CHANNELS = ("web", "app", "marketplace", "store")
N_PRICE_MISMATCH = 6


# ============================================================================= helpers
def _us(days: np.ndarray) -> np.ndarray:
    d = np.minimum(np.asarray(days, dtype=np.float64), LAST_SEC)
    return START_US + np.round(d * 86400.0).astype(np.int64) * 1_000_000


def _ts(days, mask=None) -> pa.Array:
    days = np.asarray(days, dtype=np.float64)
    if mask is None:
        mask = np.isnan(days)
        if not mask.any():
            mask = None
    us = _us(np.where(np.isnan(days), 0.0, days))
    return pa.array(us, type=pa.int64(), mask=mask).cast(TS_TYPE)


def _ids(prefix: str, start: int, n: int, width: int) -> pa.Array:
    nums = pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64))
    s = pc.utf8_lpad(pc.cast(nums, pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, s, "")


def _take(vocab, idx: np.ndarray) -> pa.Array:
    """vocab[idx] as a string array; idx < 0 -> null."""
    if not isinstance(vocab, pa.Array):
        vocab = pa.array(list(vocab), type=pa.string())
    idx = np.asarray(idx, dtype=np.int64)
    neg = idx < 0
    return vocab.take(pa.array(np.where(neg, 0, idx), mask=neg if neg.any() else None))


def _cat(rng, p, n) -> np.ndarray:
    """n draws from a categorical distribution p (1-D)."""
    c = np.cumsum(np.asarray(p, dtype=float))
    c /= c[-1]
    return np.minimum(np.searchsorted(c, rng.random(n), side="right"), len(c) - 1)


def _cat_rows(rng, P) -> np.ndarray:
    """one categorical draw per row of probability matrix P."""
    c = np.cumsum(P, axis=1)
    c /= c[:, -1:]
    u = rng.random(len(P))[:, None]
    return np.minimum((u > c).sum(axis=1), P.shape[1] - 1)


def _trunc_exp(rng, mean, upper, n) -> np.ndarray:
    """exponential(mean) truncated to [0, upper]."""
    u = rng.random(n)
    return -mean * np.log1p(-u * (1.0 - np.exp(-np.asarray(upper) / mean)))


def _round100(x):
    return np.round(np.asarray(x) / 100.0) * 100.0


def _group_rank(keys_sorted: np.ndarray) -> np.ndarray:
    """0-based rank within runs of equal keys (keys must be sorted)."""
    n = len(keys_sorted)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.r_[True, keys_sorted[1:] != keys_sorted[:-1]]
    idx = np.arange(n)
    first = np.maximum.accumulate(np.where(start, idx, 0))
    return idx - first


def _tod(rng, chan_sales: np.ndarray) -> np.ndarray:
    """time of day (fraction of a day) by sales channel: stores 10-21h, online evening peak."""
    n = len(chan_sales)
    store_h = 10.0 + 11.5 * rng.beta(1.6, 1.4, n)
    onl = rng.random(n)
    online_h = np.where(onl < 0.15, rng.uniform(6, 12, n),
                        np.where(onl < 0.45, rng.uniform(12, 18, n),
                                 np.where(onl < 0.92, rng.uniform(18, 23.5, n),
                                          rng.uniform(0, 6, n))))
    h = np.where(chan_sales == SS, store_h, online_h)
    return np.floor(h * 3600.0) / 86400.0


def _subset_tables():
    """Noisy-OR journey model: subset probabilities, conversion, Shapley truth."""
    k = len(MKT)
    w = np.array([JOURNEY["w"][c] for c in MKT])
    q = np.array([JOURNEY["inclusion_prob"][c] for c in MKT])
    b = JOURNEY["base_rate"]
    masks = np.arange(2 ** k)
    bits = ((masks[:, None] >> np.arange(k)) & 1).astype(bool)
    p_set = np.prod(np.where(bits, q, 1 - q), axis=1)
    v = 1.0 - (1.0 - b) * np.prod(np.where(bits, 1 - w, 1.0), axis=1)
    return bits, p_set, v, w, q, b


def _shapley(v_of_mask, players):
    """exact Shapley values of a game given as function of bitmask over `players`."""
    n = len(players)
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for r in range(n):
            wgt = factorial(r) * factorial(n - r - 1) / factorial(n)
            for sub in combinations(others, r):
                m = sum(1 << players[j] for j in sub)
                phi[i] += wgt * (v_of_mask(m | (1 << players[i])) - v_of_mask(m))
    return phi


def _journey_truth() -> dict:
    bits, p_set, v, w, q, b = _subset_tables()
    k = len(MKT)
    full = list(range(k))
    phi_inc = _shapley(lambda m: v[m] - b, full)
    phi_base = _shapley(lambda m: v[m] if m else 0.0, full)
    # expected credit: Shapley within each journey's own channel set, weighted by P(set)
    credit = np.zeros(k)
    for m in range(1, 2 ** k):
        members = [i for i in range(k) if bits[m, i]]
        ph = _shapley(lambda s: v[s] - b, members)
        credit[members] += p_set[m] * ph
    p_conv = float(np.sum(p_set * v))
    removal = {}
    for i, c in enumerate(MKT):
        without = np.array([m & ~(1 << i) for m in range(2 ** k)])
        removal[c] = float((p_conv - np.sum(p_set * v[without])) / p_conv)
    r = lambda a: {c: round(float(x), 6) for c, x in zip(MKT, a)}  # noqa: E731
    return {
        "model": "noisy_or",
        "formula": "P(convert | channels S) = 1 - (1 - base_rate) * prod_{c in S} (1 - w_c)",
        "base_rate": b, "w": JOURNEY["w"], "inclusion_prob": JOURNEY["inclusion_prob"],
        "expected_conversion_rate": round(p_conv, 6),
        "conversion_rate_by_set": {"|".join(c for i, c in enumerate(MKT) if bits[m, i]) or "(none)":
                                   round(float(v[m]), 6) for m in range(2 ** k)},
        "shapley_value": r(phi_inc),
        "shapley_share": r(phi_inc / phi_inc.sum()),
        "shapley_share_base_split": r(phi_base / phi_base.sum()),
        "expected_credit_share": r(credit / credit.sum()),
        "removal_effect": {c: round(x, 6) for c, x in removal.items()},
        "removal_effect_share": {c: round(x / sum(removal.values()), 6) for c, x in removal.items()},
        "notes": ("shapley_share: exact Shapley values of the incremental game "
                  "v(S) - base_rate over all five channels, normalised. "
                  "shapley_share_base_split: same with v(empty)=0 so the base rate is shared. "
                  "expected_credit_share: per-journey Shapley credit within the journey's own "
                  "channel set, averaged over the journey distribution. removal_effect: relative "
                  "drop in expected conversions if the channel is removed from every journey. "
                  "A journey = the marketing touches (channels email, social_ad, search, direct, "
                  "whatsapp; campaigns not starting with 'EXP') of one customer in the "
                  "journey_lookback_days before an online order (web/app/marketplace/whatsapp), "
                  "or in a window with no order within lookback days either side "
                  "(non-converting). Each channel appears at most once per journey."),
    }


# ============================================================================= catalogue
def _catalogue(rng):
    names, base, cat = [], [], []
    for ci, (pname, lo, hi) in enumerate(PRODUCTS):
        for col in COLOURS:
            names.append(f"{pname} {col}")
            base.append(np.round(rng.uniform(lo, hi) / 1000.0) * 1000.0 - 100.0 * 10)
            cat.append(ci)
    n = len(names)
    skus = [f"SKU-{1001 + i}" for i in range(n)]
    pop = 1.0 / np.arange(1, n + 1) ** 0.8
    pop = pop[rng.permutation(n)]
    return dict(sku=skus, name=names, base=np.array(base), pop=pop / pop.sum())


def _prices_table(rng, cat):
    n = len(cat["sku"])
    weeks = np.arange(0, int(T_END) // 7)          # Mondays (2024-07-01 is a Monday)
    obs_day = weeks * 7.0 + 10.0 / 24
    promo = rng.random((n, len(weeks))) < 0.12
    promo_frac = rng.choice([0.10, 0.15, 0.20, 0.25, 0.30], size=(n, len(weeks)))
    price = cat["base"][:, None] * np.where(promo, 1.0 - promo_frac, 1.0)
    price = np.round(price / 100.0) * 100.0
    mism = np.sort(rng.choice(n, N_PRICE_MISMATCH, replace=False))
    factors = np.array([0.90, 0.85, 1.08, 0.92, 1.10, 0.88])[:N_PRICE_MISMATCH]
    app_factor = np.ones(n)
    app_factor[mism] = factors
    parts = []
    for ch in PRICE_CHANNELS:
        f = app_factor[:, None] if ch == "app" else 1.0
        p = np.round(price * f / 100.0) * 100.0
        ok = np.ones_like(p, dtype=bool)
        if ch == "app":
            ok &= obs_day[None, :] >= LAUNCH
        si, wi = np.nonzero(ok)
        parts.append((si, np.full(len(si), CH[ch]), p[si, wi], obs_day[wi]))
    si = np.concatenate([x[0] for x in parts])
    chn = np.concatenate([x[1] for x in parts])
    pr = np.concatenate([x[2] for x in parts])
    od = np.concatenate([x[3] for x in parts])
    order = np.lexsort((chn, od, si))
    si, chn, pr, od = si[order], chn[order], pr[order], od[order]
    table = pa.table({
        "sku": _take(cat["sku"], si), "channel": _take(CHANNELS, chn),
        "price": pa.array(pr, pa.float64()), "observed_at": _ts(od),
        "product_name": _take(cat["name"], si)})
    truth = [{"sku": cat["sku"][i], "product_name": cat["name"][i],
              "web_base_price": float(cat["base"][i]),
              "app_base_price": float(np.round(cat["base"][i] * app_factor[i] / 100) * 100),
              "app_over_web": float(app_factor[i]), "from": DEFAULTS["app_launch"]}
             for i in mism]
    return table, truth


# ============================================================================= events
class _Events:
    def __init__(self):
        self.parts = []

    def add(self, t, ch, et, cust=-1, sess=-1, camp=-1, store=-1, order=-1):
        t = np.asarray(t, dtype=np.float64)
        n = len(t)
        if n == 0:
            return

        def f(x, dt=np.int64):
            x = np.asarray(x, dtype=dt)
            return np.broadcast_to(x, (n,)) if x.ndim == 0 else x
        self.parts.append((t, f(ch, np.int16), f(et, np.int16), f(cust), f(sess), f(camp, np.int16),
                           f(store, np.int16), f(order)))

    def concat(self):
        cols = list(zip(*self.parts))
        return [np.concatenate(c) for c in cols]


# ============================================================================= writer
class _Writer:
    OPTS = dict(compression="zstd", compression_level=1, use_dictionary=True,
                write_statistics=True, version="2.6", data_page_version="1.0")

    def __init__(self, root: Path):
        self.root = root
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}

    def write(self, name: str, table: pa.Table):
        if name not in self.writers:
            path = self.root / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writers[name] = pq.ParquetWriter(path, table.schema, **self.OPTS)
            self.rows[name] = 0
        self.writers[name].write_table(table, row_group_size=1 << 20)
        self.rows[name] += table.num_rows

    def close(self):
        for w in self.writers.values():
            w.close()


# ============================================================================= chunk
class _Ctx:
    """state carried across chunks: id offsets, global catalogue, truth accumulators."""

    def __init__(self, n_customers: int, catalogue: dict):
        self.n_customers = n_customers
        self.cat = catalogue
        self.off = dict(customer=0, record=0, order=0, event=0, session=0, survey=0, ticket=0,
                        journey=0)
        wide = n_customers * 400
        self.width = dict(customer=max(7, len(str(n_customers))),
                          record=max(8, len(str(n_customers * 5))),
                          order=max(8, len(str(n_customers * 60))),
                          event=max(10, len(str(wide))), session=max(9, len(str(wide))),
                          survey=max(7, len(str(n_customers * 10))),
                          ticket=max(7, len(str(n_customers * 10))),
                          journey=max(9, len(str(wide))))
        nd = int(T_END)
        self.spend_counts = np.zeros((nd, len(CAMPAIGNS)), dtype=np.int64)
        self.spend_impr = np.zeros((nd, len(CAMPAIGNS)), dtype=np.int64)
        self.mp_revenue = np.zeros(nd)
        self.acc = {}
        self.exp_acc = {e["id"]: {v[0]: dict(n=0, conv=0, p_sum=0.0, p2_sum=0.0, orders=0, returned=0,
                                              revenue=0.0) for v in e["variants"]}
                        for e in EXPERIMENTS}

    def add(self, key, value):
        self.acc[key] = self.acc.get(key, 0) + value

    def next_ids(self, kind, n):
        s = self.off[kind]
        self.off[kind] += n
        return _ids({"customer": "C", "record": "R", "order": "O", "event": "EV", "session": "S",
                     "survey": "SV", "ticket": "TK", "journey": "J"}[kind], s, n,
                    self.width[kind])


def _gen_chunk(ctx: _Ctx, rng: np.random.Generator, n: int, writer: _Writer, step=None):
    step = step or (lambda s: None)
    step("customers")
    cat = ctx.cat
    # ------------------------------------------------------------------ customers
    seg = _cat(rng, _SP["share"], n)
    u = rng.random(n)
    # density proportional to 1 - ACQ_SLOPE * t / T (more customers in the first year)
    lin = (1.0 - np.sqrt(1.0 - ACQ_SLOPE * (2.0 - ACQ_SLOPE) * u)) / ACQ_SLOPE
    t_gen = T_END * lin
    pre = rng.random(n) < APP_PRE_LAUNCH_SHARE
    t_app = np.where(pre, rng.random(n) * LAUNCH, LAUNCH + (T_END - LAUNCH) * lin)
    t_first = rng.random(n) * FIRST_YEAR_DAYS
    acq_kind = np.array([{"early": 0, "app": 1, "first_year": 2}[s["acq"]] for s in SEGMENTS])[seg]
    t0 = np.where(acq_kind == 1, t_app, np.where(acq_kind == 2, t_first, t_gen))
    t0 = np.minimum(t0, T_END - 0.5)
    lam = rng.gamma(_SP["lam_shape"][seg], _SP["lam"][seg] / _SP["lam_shape"][seg])
    pa_, pb_ = _SP["p"][seg] * _SP["p_conc"][seg], (1 - _SP["p"][seg]) * _SP["p_conc"][seg]
    p_drop = rng.beta(pa_, pb_)
    nu = rng.gamma(GG_Q, 1.0 / (_SP["spend"][seg] * (GG_Q - 1.0) / GG_P))   # rate parameter
    exp_value = GG_P / nu

    # channel weights: Dirichlet around the segment mix, sparse, <= 4 channels, app => web
    alpha = _SP["mix"][seg] * _SP["conc"][seg][:, None]
    g = np.where(alpha > 0, rng.gamma(np.maximum(alpha, 1e-9)), 0.0)
    w = g / np.maximum(g.sum(1, keepdims=True), 1e-300)
    keep = w >= 0.04
    keep[np.arange(n), w.argmax(1)] = True
    w = np.where(keep, w, 0.0)
    need_web = (w[:, SA] > 0) & (w[:, SW] == 0)
    w[need_web, SW] = 0.05
    ranked = np.where(np.isin(np.arange(5), [SW, SA])[None, :] & (w > 0), 9.0, w)
    fourth = -np.sort(-ranked, axis=1)[:, 3]
    w = np.where((ranked < fourth[:, None]) & (w > 0) & ((w > 0).sum(1) > 4)[:, None], 0.0, w)
    # customers that can only use the app yet were born before launch keep web
    w = w / w.sum(1, keepdims=True)
    inset = w > 0

    city_any = _cat(rng, _CITY_W, n)
    city_st = _cat(rng, _CITY_W_STORE, n)
    city = np.where(inset[:, SS], city_st, city_any)
    home = _CITY_HOME[city]
    alt = _CITY_ALT[city]
    home = np.where((alt >= 0) & (rng.random(n) < 0.3), alt, home)
    alt = np.where(home == _CITY_ALT[city], _CITY_HOME[city], alt)
    consent_an = rng.random(n) >= 0.05
    consent_mk = rng.random(n) < 0.70
    cust_lat = rng.normal(0.0, 0.6, n)                    # customer-level satisfaction offset

    # ------------------------------------------------------------------ BG/NBD purchases
    step("orders")
    Ti = T_END - t0
    N = rng.poisson(lam * Ti)
    J = rng.geometric(p_drop)
    K = np.minimum(N, J)
    alive = J > N
    tot = int(K.sum())
    rc = np.repeat(np.arange(n), K)
    starts = np.cumsum(K) - K
    ri = np.arange(tot) - np.repeat(starts, K)
    e = np.log(rng.random(tot)) / (N[rc] - ri)
    cs = np.cumsum(e)
    pos = K > 0
    base = np.repeat(cs[starts[pos]] - e[starts[pos]], K[pos])
    U = 1.0 - np.exp(cs - base)
    rt = t0[rc] + U * Ti[rc]
    # process orders: first (at t0) + repeats
    o_c = np.concatenate([np.arange(n), rc])
    o_t = np.concatenate([t0, rt])
    o_first = np.r_[np.ones(n, bool), np.zeros(tot, bool)]
    srt = np.lexsort((o_t, o_c))
    o_c, o_t, o_first = o_c[srt], o_t[srt], o_first[srt]
    no = len(o_c)
    # sales channel
    ch = _cat_rows(rng, w[o_c])
    forced_app = o_first & (seg[o_c] == APPF) & (o_t >= LAUNCH) & inset[o_c, SA]
    ch = np.where(forced_app, SA, ch)
    ch = np.where((ch == SA) & (o_t < LAUNCH), SW, ch)
    first_app = np.zeros(n, bool)
    first_app[o_c[o_first]] = ch[o_first] == SA
    # time of day; keep first order first
    day = np.floor(o_t)
    o_t = np.minimum(day + _tod(rng, ch), LAST_SEC)
    first_t = np.zeros(n)
    first_t[o_c[o_first]] = o_t[o_first]
    rank = _group_rank(o_c)
    o_t = np.where(o_first, o_t, np.maximum(o_t, first_t[o_c] + rank * 60.0 / 86400.0))
    o_t = np.minimum(o_t, LAST_SEC)
    last_proc = np.full(n, -1.0)
    np.maximum.at(last_proc, o_c, o_t)
    dropout_time = np.where(alive, np.nan, last_proc)
    life_end = np.where(alive, T_END, dropout_time)

    # ------------------------------------------------------------------ experiments
    step("experiments")
    exp_rows = []            # experiments table parts
    x_orders = []            # experiment orders: (cust, t, chan, exp_idx, variant, discount flag, ret_p)
    x_units = []             # truth per unit
    ev = _Events()
    lam_sqrt = np.sqrt(lam)
    for xi, xp in enumerate(EXPERIMENTS):
        st = _day(xp["start"]) + 9.0 / 24
        wend = st + xp["enroll_days"] + xp["window_days"]
        elig = (t0 < st - 1) & (life_end > wend + 1)
        if xp["elig"] == "email":
            elig &= consent_mk & (inset[:, SW] | inset[:, SA])
        elif xp["elig"] == "web":
            elig &= inset[:, SW]
        elif xp["elig"] == "app":
            elig &= inset[:, SA]
        elif xp["elig"] == "online":
            elig &= inset[:, SW] | inset[:, SA]
        elig &= rng.random(n) < xp["frac"]
        uc = np.nonzero(elig)[0]
        nu_ = len(uc)
        vnames = [v[0] for v in xp["variants"]]
        shares = np.array([v[1] for v in xp["variants"]])
        lifts = np.array([v[2] for v in xp["variants"]])
        var = _cat(rng, shares, nu_)
        m = lam_sqrt[uc] / max(lam_sqrt[uc].mean(), 1e-12) if nu_ else np.zeros(0)
        if "srm_realised_share_A" in xp and nu_:
            sa = xp["srm_realised_share_A"]
            drop_total = 1.0 - (1.0 - sa) / sa              # fraction of B lost
            low = m < np.median(m)
            pdrop = np.where(low, 1.6 * drop_total, 0.4 * drop_total)
            lost = (var == 1) & (rng.random(nu_) < pdrop)
            uc, var, m = uc[~lost], var[~lost], m[~lost]
            nu_ = len(uc)
        t_as = st + rng.random(nu_) * xp["enroll_days"]
        if xp["enroll_days"] == 0:
            t_as = st + rng.random(nu_) * (20.0 / 1440)
        else:
            t_as = np.floor(t_as) + (9.0 + 13.0 * rng.random(nu_)) / 24
        p_i = np.clip(xp["base"] * (1.0 + lifts[var]) * m, 0.0, 0.95)
        conv = rng.random(nu_) < p_i
        W = float(xp["window_days"])
        ch_ord = np.full(nu_, SW)
        if xp["channel"] == "app":
            ch_ord[:] = SA
        elif xp["elig"] in ("email", "online"):
            ch_ord = np.where(inset[uc, SA] & (w[uc, SA] >= w[uc, SW]) & (t_as >= LAUNCH), SA, SW)
        camp = CAMP[xp["id"]]
        cust_ev = uc
        ch_ev = SALES_CH[ch_ord]
        disc_flag = np.zeros(nu_, bool)
        if xp["id"] == "EXP01_email_subject":
            dt = _trunc_exp(rng, 1.2, W - 0.05, nu_)
            t_cv = t_as + dt
            ev.add(t_as, CH["email"], EV["impression"], cust_ev, camp=camp)
            clk = conv | (rng.random(nu_) < 0.06)
            t_clk = np.where(conv, t_cv - rng.uniform(2, 30, nu_) / 1440, t_as + _trunc_exp(rng, 0.5, W - 0.1, nu_))
            ev.add(t_clk[clk], CH["email"], EV["click"], cust_ev[clk], camp=camp)
        elif xp["id"] == "EXP02_cta_button":
            t_cv = t_as + _trunc_exp(rng, 2.0, W - 0.05, nu_)
            ev.add(t_as, CH["web"], EV["visit"], cust_ev, camp=camp)
            ev.add(t_as + 1 / 1440, CH["web"], EV["product_view"], cust_ev, camp=camp)
        elif xp["id"] == "EXP03_checkout_flow":
            t_cv = t_as + rng.uniform(2, 25, nu_) / 1440
            sess = np.arange(nu_)  # placeholder, sessions assigned below
            ev.add(t_as - 9 / 1440, CH["web"], EV["visit"], cust_ev, camp=camp, sess=sess)
            ev.add(t_as - 7 / 1440, CH["web"], EV["product_view"], cust_ev, camp=camp, sess=sess)
            ev.add(t_as - 3 / 1440, CH["web"], EV["add_to_cart"], cust_ev, camp=camp, sess=sess)
            ev.add(t_as, CH["web"], EV["checkout"], cust_ev, camp=camp, sess=sess)
        elif xp["id"] == "EXP04_personalised_offer":
            t_cv = t_as + _trunc_exp(rng, 2.5, W - 0.05, nu_)
            ev.add(t_as, CH["app"], EV["impression"], cust_ev, camp=camp)
        elif xp["id"] == "EXP05_landing_page":
            t_cv = t_as + _trunc_exp(rng, 1.0, W - 0.05, nu_)
            ev.add(t_as, CH["web"], EV["visit"], cust_ev, camp=camp)
        else:  # EXP06 abandoned cart
            sess = np.arange(nu_)
            chv = SALES_CH[ch_ord]
            ev.add(t_as - 12 / 1440, chv, EV["visit"], cust_ev, camp=camp, sess=sess)
            ev.add(t_as - 9 / 1440, chv, EV["product_view"], cust_ev, camp=camp, sess=sess)
            ev.add(t_as - 4 / 1440, chv, EV["add_to_cart"], cust_ev, camp=camp, sess=sess)
            steps = xp["steps"]
            step_t = np.array([s_[1] for s_ in steps])
            step_p = np.array([s_[3] for s_ in steps])
            treat = var == 1
            k_step = _cat(rng, step_p, nu_)
            t_cv_treat = t_as + step_t[k_step] + _trunc_exp(rng, 0.15, 0.9, nu_)
            t_cv_ctrl = t_as + _trunc_exp(rng, 1.5, W - 0.05, nu_)
            t_cv = np.where(treat, t_cv_treat, t_cv_ctrl)
            for si_, (sname, sdt, sch, _) in enumerate(steps):
                sent = treat & (~conv | (t_cv > t_as + sdt))
                ev.add(t_as[sent] + sdt, CH[sch], EV["impression"], cust_ev[sent], camp=camp)
            disc_flag = treat & conv & (k_step >= 1)
        # purchases (orders + purchase touchpoint tagged with the experiment campaign)
        t_cv = np.minimum(t_cv, LAST_SEC)
        ci = np.nonzero(conv)[0]
        x_orders.append(dict(c=uc[ci], t=t_cv[ci], ch=ch_ord[ci], x=np.full(len(ci), xi),
                             v=var[ci], disc=disc_flag[ci],
                             ret=np.array([xp.get("return_rate", {}).get(vnames[j], -1.0)
                                           for j in range(len(vnames))])[var[ci]] if len(ci) else np.zeros(0),
                             unit=ci + sum(len(z["uc"]) for z in x_units)))
        exp_rows.append(dict(x=xi, uc=uc, var=var, t=t_as, is_ctrl=var == 0,
                             share=shares[var], ch=CH[xp["channel"]]))
        x_units.append(dict(x=xi, uc=uc, var=var, p=p_i, conv=conv, t=t_as))
        acc = ctx.exp_acc[xp["id"]]
        for j, vn in enumerate(vnames):
            sel = var == j
            a = acc[vn]
            a["n"] += int(sel.sum())
            a["conv"] += int(conv[sel].sum())
            a["p_sum"] += float(p_i[sel].sum())
            a["p2_sum"] += float((p_i[sel] * (1 - p_i[sel])).sum())

    # ------------------------------------------------------------------ all orders
    step("orders")
    xo = {k: np.concatenate([d[k] for d in x_orders]) if x_orders else np.zeros(0)
          for k in ("c", "t", "ch", "x", "v", "disc", "ret", "unit")}
    nx = len(xo["c"])
    A_c = np.concatenate([o_c, xo["c"].astype(np.int64)])
    A_t = np.concatenate([o_t, xo["t"]])
    A_ch = np.concatenate([ch, xo["ch"].astype(np.int64)])
    A_x = np.concatenate([np.full(no, -1), xo["x"].astype(np.int64)])
    A_first = np.r_[o_first, np.zeros(nx, bool)]
    A_retp = np.concatenate([np.full(no, -1.0), xo["ret"].astype(float)])
    A_discx = np.r_[np.zeros(no, bool), xo["disc"].astype(bool)]
    A_unit = np.concatenate([np.full(no, -1), xo["unit"].astype(np.int64)])
    # chronological order within the chunk
    srt = np.lexsort((A_c, A_t))
    A_c, A_t, A_ch, A_x, A_first, A_retp, A_discx, A_unit = (
        a[srt] for a in (A_c, A_t, A_ch, A_x, A_first, A_retp, A_discx, A_unit))
    NO = len(A_c)
    sA = seg[A_c]
    # amounts: Gamma-Gamma
    amount = rng.gamma(GG_P, 1.0 / nu[A_c])
    amount = np.clip(_round100(amount), 50_000, 5_000_000)
    disc_p = _SP["disc"][sA]
    has_disc = (rng.random(NO) < disc_p) | A_discx
    frac = np.where(A_discx, EXPERIMENTS[5]["step_discount"], rng.uniform(0.05, 0.30, NO))
    discount = np.where(has_disc, _round100(amount * frac / (1 - frac)), 0.0)
    items = 1 + rng.poisson(np.maximum(_SP["items"][sA] - 1.0, 0.05))
    cancelled = (rng.random(NO) < 0.03) & (A_x < 0)
    ch_ret_f = np.array([1.0, 1.0, 1.25, 0.6, 1.0])[A_ch]
    ret_p = np.where(A_retp >= 0, A_retp, _SP["ret"][sA] * ch_ret_f)
    returned = ~cancelled & (rng.random(NO) < ret_p)
    status = np.where(cancelled, 1, np.where(returned, 2, 0))     # completed/cancelled/returned
    has_home = home[A_c] >= 0
    st_o = np.where((alt[A_c] >= 0) & (rng.random(NO) < 0.15), alt[A_c], home[A_c])
    is_store = A_ch == SS
    online = (A_ch == SW) | (A_ch == SA) | (A_ch == SM)
    pickup = online & (A_ch != SM) & has_home & (rng.random(NO) < 0.12)
    fulfil = np.where(is_store, 2, np.where(pickup, 1, 0))      # delivery/pickup_in_store/in_store
    store_o = np.where(is_store | pickup, st_o, -1)
    ret_to_store = returned & ~is_store & has_home & (rng.random(NO) < 0.35)
    ret_ch = np.where(returned, np.where(ret_to_store | is_store, CH["store"], SALES_CH[A_ch]), -1)
    sku = _cat(rng, cat["pop"], NO)

    # ------------------------------------------------------------------ identities
    step("identities")
    used = np.zeros((n, 5), bool)
    used[A_c, A_ch] = True
    extra = inset & ~used & (rng.random((n, 5)) < 0.35)
    lo_extra = np.where(np.arange(5)[None, :] == SA, np.maximum(first_t, LAUNCH)[:, None], first_t[:, None])
    hi_extra = np.minimum(life_end + 60.0, LAST_SEC)[:, None]
    extra &= hi_extra > lo_extra + 1
    has_rec = used | extra
    r_c, r_src = np.nonzero(has_rec)
    NR = len(r_c)
    first_on = np.full((n, 5), np.inf)
    np.minimum.at(first_on, (A_c, A_ch), A_t)
    fo = first_on[r_c, r_src]
    lead = rng.exponential(0.4, NR)
    lo_b = np.where(r_src == SA, LAUNCH, 0.0)
    created = np.where(np.isfinite(fo), np.maximum(fo - lead, np.minimum(lo_b, fo)),
                       lo_extra[r_c, r_src] + rng.random(NR) * (hi_extra[r_c, 0] - lo_extra[r_c, r_src]))
    perm = rng.permutation(NR)              # record ids are not grouped by customer
    rec_pos = np.empty(NR, dtype=np.int64)
    rec_pos[perm] = np.arange(NR)
    rec_lookup = np.full((n, 5), -1, dtype=np.int64)
    rec_lookup[r_c, r_src] = rec_pos
    first_seen = np.full(n, np.inf)
    np.minimum.at(first_seen, r_c, created)

    ids_tab, id_truth = _identity_table(rng, ctx, n, r_c, r_src, created, perm, seg, city, inset, consent_mk)
    # consent as each channel system recorded it: the person's own choice, on every record of theirs
    ids_tab = ids_tab.append_column("consent_analytics", pa.array(consent_an[id_truth["cust_sorted"]])) \
        .append_column("consent_marketing", pa.array(consent_mk[id_truth["cust_sorted"]]))
    # Siloed keys: a row names the person's record in the channel's own system where they have one
    # (web shop account, app user, marketplace buyer, loyalty card, WhatsApp number), otherwise the
    # record the marketing stack knows them by (their first account). No new random draws.
    ch2s = np.full(len(CHANNELS), -1, dtype=np.int64)
    ch2s[SALES_CH] = np.arange(len(SALES))
    by_first = np.lexsort((created, r_c))
    firsts = by_first[np.r_[True, r_c[by_first][1:] != r_c[by_first][:-1]]] if NR else by_first
    prim = np.full(n, -1, dtype=np.int64)
    prim[r_c[firsts]] = rec_pos[firsts]

    def rec_of(c: np.ndarray, ch: np.ndarray) -> np.ndarray:
        """Position of the record a row of person ``c`` (-1 = anonymous) in channel ``ch`` names."""
        c = np.asarray(c, dtype=np.int64)
        s_ = ch2s[np.asarray(ch, dtype=np.int64)]
        cc = np.maximum(c, 0)
        r = np.where((c >= 0) & (s_ >= 0), rec_lookup[cc, np.maximum(s_, 0)], -1)
        return np.where(r >= 0, r, np.where(c >= 0, prim[cc], -1))

    # customers table
    cust_ids = ctx.next_ids("customer", n)

    # ------------------------------------------------------------------ order ids & table
    ord_ids = ctx.next_ids("order", NO)
    rec_ids = id_truth["record_id_sorted"]          # by rec_pos
    o_rec = rec_lookup[A_c, A_ch]

    # ------------------------------------------------------------------ touchpoints
    step("touchpoints")
    sess_counter = [0]

    def new_sessions(k):
        s0 = sess_counter[0]
        sess_counter[0] += k
        return np.arange(s0, s0 + k)

    # re-number experiment session placeholders
    fixed_parts, ev.parts = ev.parts, []
    exp_sess_map = {}
    for part in fixed_parts:
        t, chx, et, cu, se, cp, sto, od = part
        if (se >= 0).any():
            key = int(cp[0])
            if key not in exp_sess_map:
                exp_sess_map[key] = new_sessions(int(se.max()) + 1)
            se = exp_sess_map[key][se]
        ev.parts.append((t, chx, et, cu, se, cp, sto, od))

    proc = A_x < 0
    # purchase events for every order
    pur_sess = np.full(NO, -1)
    onl_idx = np.nonzero(online & proc)[0]
    s_onl = new_sessions(len(onl_idx))
    pur_sess[onl_idx] = s_onl
    # experiment orders: campaign-tagged purchase; EXP03/EXP06 reuse their session
    xo_idx = np.nonzero(~proc)[0]
    x_camp = np.array([CAMP[i] for i in EXP_IDS])[A_x[xo_idx]] if len(xo_idx) else np.zeros(0, int)
    x_sess = np.full(len(xo_idx), -1)
    for key, smap in exp_sess_map.items():
        xi = EXP_IDS.index(CAMPAIGNS[key])
        sel = A_x[xo_idx] == xi
        # unit index within that experiment -> session
        unit_local = A_unit[xo_idx[sel]] - sum(len(z["uc"]) for z in x_units[:xi])
        x_sess[sel] = smap[unit_local]
    need = (x_sess < 0) & (A_ch[xo_idx] != SS)
    x_sess[need] = new_sessions(int(need.sum()))
    pur_sess[xo_idx] = x_sess
    camp_o = np.full(NO, -1)
    camp_o[xo_idx] = x_camp
    ev.add(A_t, SALES_CH[A_ch], EV["purchase"], A_c, pur_sess, camp_o,
           np.where(is_store, store_o, -1), np.arange(NO))
    # converting sessions of process online orders: visit, product_view(s), add_to_cart, checkout
    ot = A_t[onl_idx]
    oc = A_c[onl_idx]
    och = SALES_CH[A_ch[onl_idx]]
    gap = rng.uniform(1, 6, (len(onl_idx), 4)).cumsum(1) / 1440
    two_views = rng.random(len(onl_idx)) < 0.3
    ev.add(ot - gap[:, 3], och, EV["visit"], oc, s_onl)
    ev.add(ot - gap[:, 2], och, EV["product_view"], oc, s_onl)
    ev.add((ot - gap[:, 2])[two_views] + 0.5 / 1440, och[two_views], EV["product_view"], oc[two_views], s_onl[two_views])
    ev.add(ot - gap[:, 1], och, EV["add_to_cart"], oc, s_onl)
    ev.add(ot - gap[:, 0], och, EV["checkout"], oc, s_onl)
    # whatsapp orders: inquiry first
    wa_idx = np.nonzero((A_ch == SWA) & proc)[0]
    ev.add(A_t[wa_idx] - rng.uniform(5, 120, len(wa_idx)) / 1440, CH["whatsapp"], EV["inquiry"], A_c[wa_idx])
    # cross-channel patterns on process orders
    pattern = np.zeros(NO, dtype=np.int8)          # 0 none, 1 robo, 2 showrooming, 3 store_to_store
    st_idx = np.nonzero(is_store & proc)[0]
    s2s = (alt[A_c[st_idx]] >= 0) & (rng.random(len(st_idx)) < _SP["s2s"][sA[st_idx]])
    robo = ~s2s & (rng.random(len(st_idx)) < _SP["robo"][sA[st_idx]])
    ri_ = st_idx[robo]
    t_r = A_t[ri_] - rng.uniform(0.3, 5.0, len(ri_))
    use_app = inset[A_c[ri_], SA] & (t_r >= LAUNCH) & (rng.random(len(ri_)) < 0.6)
    ch_r = np.where(use_app, CH["app"], CH["web"])
    okk = t_r > 0
    ri_, t_r, ch_r = ri_[okk], t_r[okk], ch_r[okk]
    pattern[ri_] = 1
    ss = new_sessions(len(ri_))
    robo_sessions = {"web": int((ch_r == CH["web"]).sum()), "app": int((ch_r == CH["app"]).sum())}
    ev.add(t_r, ch_r, EV["visit"], A_c[ri_], ss)
    ev.add(t_r + 1.5 / 1440, ch_r, EV["product_view"], A_c[ri_], ss)
    two = rng.random(len(ri_)) < 0.5
    ev.add((t_r + 4 / 1440)[two], ch_r[two], EV["product_view"], A_c[ri_][two], ss[two])
    si_ = st_idx[s2s]
    t_s = np.floor(A_t[si_] - rng.uniform(0.2, 10.0, len(si_))) + (10.5 + 10 * rng.random(len(si_))) / 24
    t_s = np.where(t_s >= A_t[si_] - 0.1, t_s - 1.0, t_s)
    okk = t_s > 0
    si_, t_s = si_[okk], t_s[okk]
    pattern[si_] = 3
    other = np.where(store_o[si_] == home[A_c[si_]], alt[A_c[si_]], home[A_c[si_]])
    ev.add(t_s, CH["store"], EV["inquiry"], A_c[si_], store=other)
    on_idx = np.nonzero(online & proc & has_home)[0]
    show = rng.random(len(on_idx)) < _SP["show"][sA[on_idx]]
    sh_ = on_idx[show]
    t_sh = np.floor(A_t[sh_] - rng.uniform(0.1, 7.0, len(sh_))) + (10.5 + 10 * rng.random(len(sh_))) / 24
    okk = (t_sh > 0) & (t_sh < A_t[sh_])
    sh_, t_sh = sh_[okk], t_sh[okk]
    pattern[sh_] = 2
    ev.add(t_sh, CH["store"], EV["visit"], A_c[sh_], store=home[A_c[sh_]])
    for kk, nm in ((1, "robo"), (2, "showrooming"), (3, "store_to_store")):
        ctx.add(f"pattern_{nm}", int((pattern == kk).sum()))
    ctx.add("pattern_store_orders", len(st_idx))
    ctx.add("pattern_online_orders_with_home_store", len(on_idx))
    ctx.add("pattern_store_orders_with_second_store", int((alt[A_c[st_idx]] >= 0).sum()))
    # failed (non-converting) sessions, funnel-consistent
    for cname, sp in FUNNEL.items():
        sc = SALES.index(cname)
        s1, s2, s3, s4 = sp
        pc_ = s1 * s2 * s3 * s4
        stop = np.array([1 - s1, s1 * (1 - s2), s1 * s2 * (1 - s3), s1 * s2 * s3 * (1 - s4)])
        idx = np.nonzero(online & proc & (A_ch == sc))[0]
        nf = rng.poisson((1 - pc_) / pc_, len(idx))
        fi = np.repeat(idx, nf)
        nfs = len(fi)
        stage = _cat(rng, stop, nfs)
        # research (ROBO) sessions stop at product_view too: drop as many failed ones that
        # stop there so that the channel's funnel keeps the planted continuation rates
        r_n = robo_sessions.get(cname, 0)
        if r_n:
            at_view = np.nonzero(stage == 1)[0]
            drop = rng.choice(at_view, size=min(r_n, len(at_view)), replace=False)
            keep_f = np.ones(nfs, bool)
            keep_f[drop] = False
            fi, stage = fi[keep_f], stage[keep_f]
            nfs = len(fi)
            ctx.add(f"funnel_robo_sessions_{cname}", r_n)
        ts_ = A_t[fi] - rng.random(nfs) * FAILED_SESSION_LEAD_DAYS - 0.01
        if cname == "app":
            ts_ = np.maximum(ts_, LAUNCH + 0.3)
        ts_ = np.maximum(ts_, 0.0)
        anon = rng.random(nfs) < ANON_SHARE[cname]
        cu = np.where(anon, -1, A_c[fi])
        ss = new_sessions(nfs)
        chn = CH[cname]
        ev.add(ts_, chn, EV["visit"], cu, ss)
        for k_, et in enumerate(("product_view", "add_to_cart", "checkout"), start=1):
            sel = stage >= k_
            ev.add(ts_[sel] + k_ * 2.0 / 1440, chn, EV[et], cu[sel], ss[sel])
        ctx.add(f"funnel_failed_sessions_{cname}", nfs)
        ctx.add(f"funnel_converting_sessions_{cname}", len(idx))
    # reviews
    rv = (status == 0) & (rng.random(NO) < np.where(A_ch == SM, 0.15, 0.04))
    t_rv = A_t[rv] + rng.uniform(1, 10, int(rv.sum()))
    okr = t_rv < LAST_SEC
    rvi = np.nonzero(rv)[0][okr]
    ev.add(t_rv[okr], SALES_CH[A_ch[rvi]], EV["review"], A_c[rvi], order=rvi)


    # ------------------------------------------------------------------ journeys (noisy-OR)
    bits, p_set, v_set, _, _, _ = _subset_tables()
    conv_idx = np.nonzero(proc & (online | (A_ch == SWA)))[0]
    ncv = len(conv_idx)
    post = p_set * v_set
    m_conv = _cat(rng, post, ncv)
    pbar = float(post.sum())
    n_non = int(rng.negative_binomial(ncv, pbar)) if ncv else 0
    m_non = _cat(rng, p_set * (1 - v_set), n_non)
    # previous process order per customer (orders sorted by time; use customer-sorted view)
    srt_c = np.lexsort((A_t, A_c))
    prev_t = np.full(NO, -np.inf)
    same = np.r_[False, A_c[srt_c][1:] == A_c[srt_c][:-1]]
    prev_t[srt_c[same]] = A_t[srt_c][np.nonzero(same)[0] - 1]
    LB = float(DEFAULTS["journey_lookback_days"])
    jc_cust = A_c[conv_idx]
    jc_end = A_t[conv_idx]
    jc_start = np.maximum(np.maximum(prev_t[conv_idx], jc_end - LB), 0.0)
    # non-converting journeys: one per (customer, 3*lookback slot) at most, on a grid with a
    # random phase per customer, with no order inside the window or within lookback days after it
    span = np.maximum(np.minimum(life_end + 30.0, T_END) - first_seen, 0.0)
    key_all = np.sort(A_c * 1024.0 + A_t)
    SLOT = 3.0 * LB
    phase = rng.random(n) * SLOT
    cand = int(n_non * 4.0) + 10
    pc_c = _cat(rng, span / max(span.sum(), 1e-12), cand) if span.sum() > 0 else np.zeros(0, int)
    pc_t = first_seen[pc_c] + rng.random(cand) * span[pc_c]
    slot = np.floor((pc_t - phase[pc_c]) / SLOT)
    pc_t = phase[pc_c] + slot * SLOT + 2.0 * LB            # window end; window = [end - LB, end]
    _, first_occ = np.unique(pc_c * 100_000 + slot.astype(np.int64), return_index=True)
    uniq = np.zeros(cand, bool)
    uniq[first_occ] = True
    lo = np.searchsorted(key_all, pc_c * 1024.0 + pc_t - LB, "left")
    hi = np.searchsorted(key_all, pc_c * 1024.0 + pc_t + LB, "right")
    valid = uniq & (lo == hi) & (pc_t < LAST_SEC) & (pc_t - LB > first_seen[pc_c])
    vi = np.nonzero(valid)[0][:n_non]
    if len(vi) < n_non:
        m_non = m_non[:len(vi)]
        ctx.add("journey_nonconverting_shortfall", n_non - len(vi))
    jn_cust, jn_end = pc_c[vi], pc_t[vi]
    jn_start = np.maximum(jn_end - LB, 0.0)
    J_cust = np.concatenate([jc_cust, jn_cust])
    J_end = np.concatenate([jc_end, jn_end])
    J_start = np.concatenate([jc_start, jn_start])
    J_mask = np.concatenate([m_conv, m_non])
    J_conv = np.r_[np.ones(ncv, bool), np.zeros(len(jn_cust), bool)]
    J_order = np.r_[conv_idx, np.full(len(jn_cust), -1)]
    ctx.add("journeys_converting", ncv)
    ctx.add("journeys_nonconverting", len(jn_cust))
    ctx.add("journeys_nonconverting_empty", int((m_non == 0).sum()))
    ctx.add("journeys_converting_empty", int((m_conv == 0).sum()))
    for k_, cname in enumerate(MKT):
        has = ((J_mask >> k_) & 1).astype(bool)
        ctx.add(f"journey_touch_{cname}", int(has.sum()))
        ji = np.nonzero(has)[0]
        span_j = np.maximum(J_end[ji] - J_start[ji] - 2 / 1440, 1 / 1440)
        off = span_j * rng.random(len(ji)) ** JOURNEY["position_exponent"][cname] + 1 / 1440
        tt = J_end[ji] - off
        if cname == "direct":
            camp_j = np.full(len(ji), -1)
        else:
            cl = CAMPAIGNS_BY_MKT[cname]
            camp_j = np.array([CAMP[c] for c, _ in cl])[_cat(rng, [p_ for _, p_ in cl], len(ji))]
        et = np.full(len(ji), EV[MKT_EVENT[cname]])
        if cname == "social_ad":
            et = np.where(rng.random(len(ji)) < SOCIAL_IMPRESSION_SHARE, EV["impression"], et)
        ev.add(tt, CH[cname], et, J_cust[ji], camp=camp_j)
    j_ids = ctx.next_ids("journey", len(J_cust))

    # ------------------------------------------------------------------ assemble touchpoints
    E_t, E_ch, E_et, E_c, E_s, E_cp, E_st, E_o = ev.concat()
    keep = (E_t >= 0) & (E_t <= LAST_SEC)
    keep &= ~((E_ch == CH["app"]) & (E_t < LAUNCH))
    if not keep.all():
        E_t, E_ch, E_et, E_c, E_s, E_cp, E_st, E_o = (a[keep] for a in (E_t, E_ch, E_et, E_c, E_s, E_cp, E_st, E_o))
    E_t = np.round(E_t * 86400.0) / 86400.0
    srt = np.lexsort((E_et, E_t))
    E_t, E_ch, E_et, E_c, E_s, E_cp, E_st, E_o = (a[srt] for a in (E_t, E_ch, E_et, E_c, E_s, E_cp, E_st, E_o))
    NE = len(E_t)
    sess_ids = ctx.next_ids("session", sess_counter[0])
    # spend accumulators
    d_ = np.minimum(E_t.astype(np.int64), int(T_END) - 1)
    paid = (E_cp >= 0) & (E_cp < len(CAMPAIGNS) - len(EXP_IDS))
    np.add.at(ctx.spend_counts, (d_[paid & (E_et != EV["impression"])], E_cp[paid & (E_et != EV["impression"])]), 1)
    np.add.at(ctx.spend_impr, (d_[paid & (E_et == EV["impression"])], E_cp[paid & (E_et == EV["impression"])]), 1)
    mp_o = (A_ch == SM) & (status != 1)
    np.add.at(ctx.mp_revenue, np.minimum(A_t[mp_o].astype(np.int64), int(T_END) - 1), amount[mp_o])

    touch = pa.table({
        "event_id": ctx.next_ids("event", NE),
        "event_ts": _ts(E_t),
        "channel": _take(CHANNELS, E_ch),
        "event_type": _take(EVENT_TYPES, E_et),
        "record_id": _take(rec_ids, rec_of(E_c, E_ch)),
        "session_id": _take(sess_ids, E_s),
        "campaign": _take(CAMPAIGNS, E_cp),
        "store_id": _take(STORE_IDS, E_st),
        "order_id": _take(ord_ids, E_o),
    })

    # ------------------------------------------------------------------ surveys
    step("surveys")
    sv_o = np.nonzero((status != 1) & (rng.random(NO) < _SP["survey"][sA]))[0]
    sv_t = A_t[sv_o] + rng.uniform(0.5, 5.0, len(sv_o))
    sv_ch = SALES_CH[A_ch[sv_o]]
    sv_c = A_c[sv_o]
    sv_extra = np.where(returned[sv_o], -1.5, 0.0)
    # tickets (needed before ticket surveys)
    step("tickets")
    tk_p = _SP["tick"][sA] + np.where(returned, 0.45, 0.0) + np.where(cancelled, 0.25, 0.0)
    tk_o = np.nonzero(rng.random(NO) < tk_p)[0]
    tk_c = A_c[tk_o]
    tk_t = A_t[tk_o] + np.where(returned[tk_o], rng.uniform(1, 8, len(tk_o)), rng.uniform(0.05, 10, len(tk_o)))
    tk_t = np.floor(tk_t) + np.where(rng.random(len(tk_o)) < 0.8, rng.uniform(8, 21, len(tk_o)),
                                      rng.uniform(0, 24, len(tk_o))) / 24
    okt = tk_t < LAST_SEC
    tk_o, tk_c, tk_t = tk_o[okt], tk_c[okt], tk_t[okt]
    NT = len(tk_o)
    tk_sch = _cat_rows(rng, _SP["service"][seg[tk_c]]) if NT else np.zeros(0, int)
    tk_ch = SERVICE_CH[tk_sch]
    med = np.array([TICKET_RESPONSE_MEDIAN_MIN[s] for s in SERVICE])[tk_sch]
    resp = med * np.exp(rng.normal(0, 0.8, NT)) / 1440
    fcr_p = np.array([TICKET_FCR[s] for s in SERVICE])[tk_sch]
    fcr = rng.random(NT) < fcr_p
    contacts = np.where(fcr, 1, 2 + rng.poisson(0.8, NT))
    res_dur = np.where(fcr, rng.uniform(3, 40, NT) / 1440, rng.gamma(2.0, 0.8, NT) * (contacts - 1))
    t_fr = tk_t + resp
    t_res = t_fr + res_dur
    unresolved = rng.random(NT) < 0.02
    t_fr = np.where(t_fr <= LAST_SEC, t_fr, np.nan)
    t_res = np.where(unresolved | (t_res > LAST_SEC), np.nan, t_res)
    topic = np.where(returned[tk_o], 1, _cat(rng, [0.34, 0.0, 0.18, 0.22, 0.16, 0.10], NT))
    tk_ids = ctx.next_ids("ticket", NT)
    tickets = pa.table({
        "ticket_id": tk_ids, "record_id": _take(rec_ids, rec_of(tk_c, tk_ch)), "channel": _take(CHANNELS, tk_ch),
        "opened_at": _ts(tk_t), "first_response_at": _ts(t_fr), "resolved_at": _ts(t_res),
        "contacts": pa.array(contacts.astype(np.int64)), "topic": _take(TICKET_TOPICS, topic)})
    ctx.add("tickets", NT)
    ctx.add("tickets_fcr", int(fcr.sum()))
    for s in SERVICE:
        sel = tk_ch == CH[s]
        ctx.add(f"tickets_{s}", int(sel.sum()))
        ctx.add(f"tickets_fcr_{s}", int((fcr & sel).sum()))
    # ticket surveys
    tsv = np.nonzero((rng.random(NT) < 0.25) & ~np.isnan(t_res))[0]
    sv_o2_t = t_res[tsv] + rng.uniform(0.02, 2.0, len(tsv))
    S_c = np.concatenate([sv_c, tk_c[tsv]])
    S_t = np.concatenate([sv_t, sv_o2_t])
    S_ch = np.concatenate([sv_ch, tk_ch[tsv]])
    S_extra = np.concatenate([sv_extra, np.where(fcr[tsv], 0.3, -1.2)])
    oks = S_t < LAST_SEC
    S_c, S_t, S_ch, S_extra = S_c[oks], S_t[oks], S_ch[oks], S_extra[oks]
    srt = np.argsort(S_t, kind="stable")
    S_c, S_t, S_ch, S_extra = S_c[srt], S_t[srt], S_ch[srt], S_extra[srt]
    NS = len(S_c)
    ch_eff = np.array([NPS_CHANNEL_EFFECT.get(c, 0.0) for c in CHANNELS])[S_ch]
    sat = _SP["nps"][seg[S_c]] + ch_eff + cust_lat[S_c] + S_extra
    nps = np.clip(np.round(sat + rng.normal(0, 1.1, NS)), 0, 10).astype(np.int64)
    csat = np.clip(np.round(1 + 4 * (sat + rng.normal(0, 1.0, NS)) / 10), 1, 5).astype(np.int64)
    ces = np.clip(np.round(1 + 6 * (sat + rng.normal(0, 1.4, NS)) / 10), 1, 7).astype(np.int64)
    # acquisition channel & awareness
    step("customers")
    first_order_idx = np.full(n, -1)
    fo_pos = np.nonzero(A_first)[0]
    first_order_idx[A_c[fo_pos]] = fo_pos
    acq = SALES_CH[A_ch[first_order_idx]]
    # first touch of the first order's journey, if any
    E_first_touch = _first_touch(E_t, E_ch, E_c, E_cp, n, first_t)
    acq = np.where(E_first_touch >= 0, E_first_touch, acq)
    aw_P = np.array(list(_AW_BY_ACQ.values()))
    aw_row = np.array([list(_AW_BY_ACQ).index(CHANNELS[c]) if CHANNELS[c] in _AW_BY_ACQ else 0
                       for c in range(len(CHANNELS))])
    aw_cat = _cat_rows(rng, aw_P[aw_row[acq]])
    answers = [a for c in AW_CATS for a in AWARENESS[c]]
    a_start = np.cumsum([0] + [len(AWARENESS[c]) for c in AW_CATS])[:-1]
    a_len = np.array([len(AWARENESS[c]) for c in AW_CATS])
    ans = a_start[aw_cat[S_c]] + (rng.random(NS) * a_len[aw_cat[S_c]]).astype(int)
    ans = np.where(rng.random(NS) < 0.25, -1, ans)
    ans_arr = _take(answers, ans)
    case = rng.random(NS)
    ans_arr = pc.if_else(pa.array(case < 0.12), pc.utf8_lower(ans_arr),
                         pc.if_else(pa.array(case > 0.95), pc.utf8_upper(ans_arr), ans_arr))
    surveys = pa.table({
        "response_id": ctx.next_ids("survey", NS), "record_id": _take(rec_ids, rec_of(S_c, S_ch)),
        "channel": _take(CHANNELS, S_ch), "responded_at": _ts(S_t),
        "nps": pa.array(nps), "csat": pa.array(csat), "ces": pa.array(ces),
        "awareness_source": ans_arr})

    # ------------------------------------------------------------------ tables
    step("write")
    customers = pa.table({
        "customer_id": cust_ids, "first_seen": _ts(first_seen),
        "acquisition_channel": _take(CHANNELS, acq),
        "region": _take([c[1] for c in CITIES], city),
        "consent_analytics": pa.array(consent_an), "consent_marketing": pa.array(consent_mk)})
    orders = pa.table({
        "order_id": ord_ids, "order_ts": _ts(A_t),
        "channel": _take(SALES, A_ch), "net_amount": pa.array(amount, pa.float64()),
        "record_id": _take(rec_ids, o_rec), "store_id": _take(STORE_IDS, store_o),
        "items": pa.array(items.astype(np.int64)), "discount": pa.array(discount, pa.float64()),
        "fulfilment": _take(("delivery", "pickup_in_store", "in_store"), fulfil),
        "status": _take(("completed", "cancelled", "returned"), status),
        "return_channel": _take(CHANNELS, ret_ch), "sku": _take(cat["sku"], sku)})
    # experiments table
    if exp_rows:
        X_x = np.concatenate([r["x"] * np.ones(len(r["uc"]), int) for r in exp_rows])
        X_c = np.concatenate([r["uc"] for r in exp_rows])
        X_v = np.concatenate([r["var"] for r in exp_rows])
        X_t = np.concatenate([r["t"] for r in exp_rows])
        X_ctrl = np.concatenate([r["is_ctrl"] for r in exp_rows])
        X_sh = np.concatenate([r["share"] for r in exp_rows])
        X_ch = np.concatenate([np.full(len(r["uc"]), r["ch"]) for r in exp_rows])
    else:
        X_x = X_c = X_v = X_ch = np.zeros(0, int)
        X_t = X_sh = np.zeros(0)
        X_ctrl = np.zeros(0, bool)
    # pre-period covariates from non-cancelled orders in the 90 days before assignment
    valid_o = status != 1
    kv = A_c[valid_o] * 1024.0 + A_t[valid_o]
    so = np.argsort(kv)
    kv, amt_v = kv[so], amount[valid_o][so]
    cum = np.r_[0.0, np.cumsum(amt_v)]
    PRE = float(DEFAULTS["pre_period_days"])
    hi = np.searchsorted(kv, X_c * 1024.0 + X_t, "left")
    lo = np.searchsorted(kv, X_c * 1024.0 + X_t - PRE, "left")
    pre_orders = (hi - lo).astype(np.int64)
    pre_rev = cum[hi] - cum[lo]
    vnames_all = sorted({v[0] for e in EXPERIMENTS for v in e["variants"]})
    vidx = np.array([[vnames_all.index(v[0]) for v in e["variants"]] + [0] * (3 - len(e["variants"]))
                     for e in EXPERIMENTS])
    exps = pa.table({
        "experiment_id": _take(EXP_IDS, X_x), "unit_id": _take(rec_ids, prim[X_c]),
        "variant": _take(vnames_all, vidx[X_x, X_v] if len(X_x) else np.zeros(0, int)),
        "assigned_at": _ts(X_t), "is_control": pa.array(X_ctrl.astype(bool)),
        "planned_share": pa.array(X_sh.astype(float), pa.float64()),
        "pre_revenue": pa.array(np.round(pre_rev, 2), pa.float64()),
        "pre_orders": pa.array(pre_orders), "channel": _take(CHANNELS, X_ch)})

    writer.write("identities", ids_tab)
    writer.write("orders", orders)
    writer.write("touchpoints", touch)
    writer.write("surveys", surveys)
    writer.write("tickets", tickets)
    writer.write("experiments", exps)

    # ------------------------------------------------------------------ truth tables
    n_tot = np.bincount(A_c, minlength=n)
    n_proc = np.bincount(A_c[proc], minlength=n)
    last6 = np.bincount(A_c[A_t >= CHURN_START], minlength=n) > 0
    app_o = A_ch == SA
    cannib = app_o & ~first_app[A_c]
    rev = np.where(status != 1, amount, 0.0)
    ctx.add("app_orders", int(app_o.sum()))
    ctx.add("app_orders_cannibalised", int(cannib.sum()))
    ctx.add("app_revenue", float(rev[app_o].sum()))
    ctx.add("app_revenue_cannibalised", float(rev[cannib].sum()))
    ctx.add("app_customers", int(np.unique(A_c[app_o]).size))
    ctx.add("app_customers_incremental", int((first_app & (np.bincount(A_c[app_o], minlength=n) > 0)).sum()))
    for s_ in range(NSEG):
        ctx.add(f"segment_n_{SEG_NAMES[s_]}", int((seg == s_).sum()))
    ctx.add("customers_no_analytics_consent", int((~consent_an).sum()))
    ctx.add("orders_process", int(proc.sum()))
    ctx.add("orders_experiment", int((~proc).sum()))
    for nm, k in (("nps", nps),):
        for s_ in range(NSEG):
            sel = seg[S_c] == s_
            ctx.add(f"nps_sum_{SEG_NAMES[s_]}", float(k[sel].sum()))
            ctx.add(f"nps_n_{SEG_NAMES[s_]}", int(sel.sum()))
    t_cust = pa.table({
        "customer_id": cust_ids,
        # what a CRM's customers table would hold (the siloed sample ships none)
        **{c: customers[c] for c in customers.column_names if c != "customer_id"},
        "segment": _take(SEG_NAMES, seg), "segment_id": pa.array(seg.astype(np.int64)),
        "acquired_at": _ts(first_t), "lambda": pa.array(lam), "p_dropout": pa.array(p_drop),
        "alive_at_end": pa.array(alive), "dropout_time": _ts(dropout_time),
        "n_orders": pa.array(n_tot.astype(np.int64)),
        "n_orders_process": pa.array(n_proc.astype(np.int64)),
        "n_repeat_process": pa.array(K.astype(np.int64)),
        "bought_last_6m": pa.array(last6),
        "expected_order_value": pa.array(exp_value),
        "awareness_category": _take(AW_CATS, aw_cat),
        "acquired_via_app": pa.array(first_app),
        "city": _take([c[0] for c in CITIES], city),
        "home_store": _take(STORE_IDS, home),
        **{f"w_{c}": pa.array(w[:, i]) for i, c in enumerate(SALES)},
        "latent_satisfaction": pa.array(_SP["nps"][seg] + cust_lat),
    })
    writer.write("truth/customers", t_cust)
    writer.write("truth/identity_links", id_truth["table"].append_column(
        "customer_id", _take(cust_ids, id_truth["cust_sorted"])).select(
        ["record_id", "customer_id", "source", "no_usable_key", "email_variant", "phone_variant"]))
    t_orders = pa.table({
        "order_id": ord_ids, "customer_id": _take(cust_ids, A_c),
        "origin": _take(("process", "experiment"), (~proc).astype(int)),
        "experiment_id": _take(EXP_IDS, A_x),
        "pattern": _take((None, "robo", "showrooming", "store_to_store"), np.where(pattern == 0, -1, pattern)),
        "is_first_order": pa.array(A_first),
        "app_cannibalised": pa.array(np.where(app_o, cannib, False), mask=~app_o),
        "journey_id": _take(j_ids, _inverse(J_order, NO)),
    })
    writer.write("truth/orders", t_orders)
    keepj = (J_mask != 0) | J_conv
    t_j = pa.table({
        "journey_id": j_ids.filter(pa.array(keepj)), "customer_id": _take(cust_ids, J_cust[keepj]),
        "converted": pa.array(J_conv[keepj]), "order_id": _take(ord_ids, J_order[keepj]),
        "window_start": _ts(J_start[keepj]), "window_end": _ts(J_end[keepj]),
        **{f"has_{c}": pa.array(((J_mask[keepj] >> k_) & 1).astype(bool)) for k_, c in enumerate(MKT)},
    })
    writer.write("truth/journeys", t_j)
    if x_units:
        U_x = np.concatenate([np.full(len(z["uc"]), z["x"]) for z in x_units])
        U_c = np.concatenate([z["uc"] for z in x_units])
        U_v = np.concatenate([z["var"] for z in x_units])
        U_p = np.concatenate([z["p"] for z in x_units])
        U_cv = np.concatenate([z["conv"] for z in x_units])
        unit_order = np.full(len(U_c), -1)
        xo_rows = np.nonzero(~proc)[0]
        unit_order[A_unit[xo_rows]] = xo_rows
        t_units = pa.table({
            "experiment_id": _take(EXP_IDS, U_x), "unit_id": _take(rec_ids, prim[U_c]),
            "customer_id": _take(cust_ids, U_c),
            "variant": _take(vnames_all, vidx[U_x, U_v]), "p_convert": pa.array(U_p),
            "converted": pa.array(U_cv), "order_id": _take(ord_ids, unit_order)})
        writer.write("truth/experiment_units", t_units)
        # returns and revenue per experiment variant
        o_var = np.where(A_unit >= 0, U_v[np.maximum(A_unit, 0)], -1)
        for xi, xp in enumerate(EXPERIMENTS):
            for j, v in enumerate(xp["variants"]):
                sel = (A_x == xi) & (o_var == j)
                a = ctx.exp_acc[xp["id"]][v[0]]
                a["orders"] += int(sel.sum())
                a["returned"] += int((sel & (status == 2)).sum())
                a["revenue"] += float(amount[sel & (status == 0)].sum())
    for k in ("identity_records", "identity_no_key"):
        ctx.add(k, id_truth[k])
    return dict(customers=n, orders=NO, touchpoints=NE)


def _inverse(idx: np.ndarray, size: int) -> np.ndarray:
    inv = np.full(size, -1, dtype=np.int64)
    ok = idx >= 0
    inv[idx[ok]] = np.nonzero(ok)[0]
    return inv


def _first_touch(E_t, E_ch, E_c, E_cp, n, first_t):
    """channel of each customer's earliest marketing touch up to the first order (else -1)."""
    mk = np.isin(E_ch, MKT_CH) & (E_c >= 0)
    mk &= ~np.isin(E_cp, [CAMP[i] for i in EXP_IDS])
    idx = np.nonzero(mk)[0]
    idx = idx[E_t[idx] <= first_t[E_c[idx]] + 1e-9]
    out = np.full(n, -1)
    # E_t sorted ascending: first occurrence per customer = earliest
    cu, first = np.unique(E_c[idx], return_index=True)
    out[cu] = E_ch[idx[first]]
    return out


# ============================================================================= identities
def _typo(s: str, k: int) -> str:
    if len(s) < 4:
        return s + s[-1]
    i = 1 + (k % (len(s) - 2))
    r = k % 3
    if r == 0:
        return s[:i] + s[i + 1:]                    # deletion
    if r == 1:
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]  # transposition
    return s[:i] + s[i] + s[i:]                     # doubling


_FIRST = FIRST_M + FIRST_F
_FIRST_TYPO = tuple(_typo(s, i) for i, s in enumerate(_FIRST))
_LAST_TYPO = tuple(_typo(s, i + 1) for i, s in enumerate(LAST))


def _phone_format(core: pa.Array, fmt: np.ndarray) -> pa.Array:
    a = pc.utf8_slice_codeunits(core, 0, 3)
    b = pc.utf8_slice_codeunits(core, 3, 7)
    c = pc.utf8_slice_codeunits(core, 7, 20)
    j = pc.binary_join_element_wise
    variants = [
        j("0", core, ""), core, j("62", core, ""), j("+62 ", a, "-", b, "-", c, ""),
        j("0", a, "-", b, "-", c, ""), j("+62", core, ""), j("0", a, " ", b, " ", c, ""),
    ]
    out = variants[0]
    for k in range(1, len(variants)):
        out = pc.if_else(pa.array(fmt == k), variants[k], out)
    return out


def _identity_table(rng, ctx, n, r_c, r_src, created, perm, seg, city, inset, consent_mk):
    NR = len(r_c)
    # customer-level true identity
    female = rng.random(n) < 0.52
    fi = np.where(female, len(FIRST_M) + rng.integers(0, len(FIRST_F), n), rng.integers(0, len(FIRST_M), n))
    single = rng.random(n) < 0.15
    li = np.where(single, -1, rng.integers(0, len(LAST), n))
    email_fmt = _cat(rng, [0.50, 0.30, 0.15, 0.05], n)
    email_num = rng.integers(1, 9999, n)
    email_num2 = rng.integers(1, 99, n)
    dom = _cat(rng, [p for _, p in EMAIL_DOMAINS], n)
    ph_pre = rng.integers(0, len(PHONE_PREFIX), n)
    ph_len = np.where(rng.random(n) < 0.7, 8, 7)
    ph_num = rng.integers(0, 10 ** ph_len)
    ph_num_alt = rng.integers(0, 10 ** 8, n)
    loyal_num = rng.integers(10 ** 9, 10 ** 10, n)

    rc = r_c
    src_names = np.array(SALES)[r_src]
    miss = np.array([SOURCE_MISSING[s] for s in SALES])[r_src]
    u = rng.random((NR, 12))
    # ---- names
    typo_f = u[:, 0] < 0.06
    typo_l = u[:, 1] < 0.04
    first_v = pa.array(list(_FIRST)).take(pa.array(fi[rc]))
    first_t = pa.array(list(_FIRST_TYPO)).take(pa.array(fi[rc]))
    first_s = pc.if_else(pa.array(typo_f), first_t, first_v)
    last_s = pc.if_else(pa.array(typo_l), _take(_LAST_TYPO, li[rc]), _take(LAST, li[rc]))
    wa_short = (r_src == SWA) & (u[:, 2] < 0.35)
    last_s = pc.if_else(pa.array(wa_short), pa.nulls(NR, pa.string()), last_s)
    name = pc.binary_join_element_wise(first_s, last_s, " ", null_handling="skip")
    title_idx = np.where(female[rc], len(TITLES_M), 0) + rng.integers(0, 4, NR)
    titled = u[:, 3] < 0.12
    titles = _take(TITLES_M + TITLES_F, np.where(titled, title_idx, -1))
    name = pc.binary_join_element_wise(titles, name, " ", null_handling="skip")
    cs = u[:, 4]
    name = pc.if_else(pa.array(cs < 0.12), pc.utf8_upper(name),
                      pc.if_else(pa.array(cs > 0.92), pc.utf8_lower(name), name))
    ws = u[:, 5]
    name = pc.if_else(pa.array(ws < 0.03), pc.binary_join_element_wise(name, " ", ""),
                      pc.if_else(pa.array(ws > 0.985), pc.binary_join_element_wise("  ", name, ""), name))
    name_missing = u[:, 6] < miss[:, 2]
    # ---- emails
    fl = pc.utf8_lower(pc.if_else(pa.array((u[:, 7] < 0.03)), first_t, first_v))
    ll = pc.utf8_lower(_take(LAST, li[rc]))
    alt_email = u[:, 8] < 0.10
    # a second address's number is unrelated to the first (a fixed offset would be a
    # pattern no real data has); from a stream of its own, like the second SIM below
    ss = rng.bit_generator.seed_seq
    alt_num = np.random.default_rng(np.random.SeedSequence(
        ss.entropy, spawn_key=(*ss.spawn_key, _ALT_EMAIL_STREAM))).integers(1, 9999, n)
    num = pc.cast(pa.array(np.where(alt_email, alt_num[rc], email_num[rc])), pa.string())
    num2 = pc.cast(pa.array(email_num2[rc]), pa.string())
    j = pc.binary_join_element_wise
    ll_or_empty = pc.fill_null(ll, "")
    e0 = j(fl, pc.if_else(pc.is_null(ll), pa.scalar(""), j(".", ll_or_empty, "")), num, "")
    e1 = j(fl, ll_or_empty, num2, "")
    e2 = j(fl, "_", num, "")
    e3 = j(fl, ll_or_empty, "")
    ef = email_fmt[rc]
    local = pc.if_else(pa.array(ef == 1), e1, pc.if_else(pa.array(ef == 2), e2,
                                                          pc.if_else(pa.array(ef == 3), e3, e0)))
    dom_i = np.where(alt_email & (u[:, 9] < 0.5), (dom[rc] + 1) % len(EMAIL_DOMAINS), dom[rc])
    email = j(local, _take([d for d, _ in EMAIL_DOMAINS], dom_i), "@")
    ec = u[:, 10]
    email = pc.if_else(pa.array(ec < 0.07), pc.utf8_upper(email),
                       pc.if_else(pa.array(ec > 0.95), pc.utf8_capitalize(email), email))
    ew = rng.random(NR)
    email = pc.if_else(pa.array(ew < 0.04), j(email, " ", ""),
                       pc.if_else(pa.array(ew > 0.97), j(" ", email, ""), email))
    email_missing = rng.random(NR) < miss[:, 0]
    # ---- phones
    alt_phone = rng.random(NR) < 0.06
    # a person's second number is often a SIM of another operator: its prefix is drawn
    # independently, from the same operator distribution. From a stream of its own
    # (derived from the chunk's seed, not drawn from ``rng``), so every other value of
    # the sample stays as it was.
    ss = rng.bit_generator.seed_seq
    alt_rng = np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, _ALT_SIM_STREAM)))
    ph_pre_alt = alt_rng.integers(0, len(PHONE_PREFIX), n)
    pnum = np.where(alt_phone, ph_num_alt[rc] % (10 ** ph_len[rc]), ph_num[rc])
    pnum_s = pc.cast(pa.array(pnum), pa.string())
    pad7 = pc.utf8_lpad(pnum_s, width=7, padding="0")
    pad8 = pc.utf8_lpad(pnum_s, width=8, padding="0")
    pre = np.where(alt_phone, ph_pre_alt[rc], ph_pre[rc])
    core = j(_take(PHONE_PREFIX, pre), pc.if_else(pa.array(ph_len[rc] == 8), pad8, pad7), "")
    pfmt = _cat(rng, PHONE_FORMATS, NR)
    phone = _phone_format(core, pfmt)
    phone_missing = rng.random(NR) < miss[:, 1]
    # ---- loyalty id: store cards; web/app records of card holders sometimes linked
    has_store = inset[:, SS]
    loyal = pc.binary_join_element_wise("TN", pc.cast(pa.array(loyal_num[rc]), pa.string()), "")
    loyal_on = ((r_src == SS) & (rng.random(NR) >= 0.05)) | (
        ((r_src == SW) | (r_src == SA)) & has_store[rc] & (rng.random(NR) < 0.3))
    # ---- records with no usable key
    no_key = rng.random(NR) < NO_KEY_SHARE
    email_missing |= no_key
    phone_missing |= no_key
    loyal_on &= ~no_key
    email = pc.if_else(pa.array(email_missing), pa.nulls(NR, pa.string()), email)
    phone = pc.if_else(pa.array(phone_missing), pa.nulls(NR, pa.string()), phone)
    name = pc.if_else(pa.array(name_missing), pa.nulls(NR, pa.string()), name)
    loyal = pc.if_else(pa.array(loyal_on), loyal, pa.nulls(NR, pa.string()))
    # ---- city
    city_s = _take([c[0] for c in CITIES], city[rc])
    cc = rng.random(NR)
    city_s = pc.if_else(pa.array(cc < 0.15), pc.utf8_lower(city_s),
                        pc.if_else(pa.array(cc > 0.93), pc.utf8_upper(city_s), city_s))
    city_s = pc.if_else(pa.array(rng.random(NR) < 0.22), pa.nulls(NR, pa.string()), city_s)

    # ids in shuffled order
    rec_ids = ctx.next_ids("record", NR)          # position p -> id
    order = perm                                  # position p holds original record perm[p]
    tab = pa.table({
        "record_id": rec_ids,
        "source": _take(SALES, r_src[order]),
        "created_at": _ts(created[order]),
        "email": email.take(pa.array(order)), "phone": phone.take(pa.array(order)),
        "full_name": name.take(pa.array(order)), "city": city_s.take(pa.array(order)),
        "loyalty_id": loyal.take(pa.array(order)),
    })
    ev_ = np.where(email_missing, 0, np.where(alt_email, 2, 1))
    pv_ = np.where(phone_missing, 0, np.where(alt_phone, 2, 1))
    truth = pa.table({
        "record_id": rec_ids, "source": _take(SALES, r_src[order]),
        "no_usable_key": pa.array((email_missing & phone_missing & ~loyal_on)[order]),
        "email_variant": _take(("missing", "primary", "alternate"), ev_[order]),
        "phone_variant": _take(("missing", "primary", "alternate"), pv_[order]),
    })
    return tab, {"record_id_sorted": rec_ids, "table": truth, "cust_sorted": rc[order],
                 "identity_records": NR,
                 "identity_no_key": int((email_missing & phone_missing & ~loyal_on).sum())}


# ============================================================================= spend
def _spend_table(rng, ctx: _Ctx):
    nd = int(T_END)
    rows_d, rows_ch, rows_c, rows_s = [], [], [], []
    days = np.arange(nd, dtype=float)
    weekday = np.arange(nd) % 7                # 2024-07-01 is a Monday (0)
    dates = np.datetime64(DEFAULTS["period_start"]) + np.arange(nd)
    dom = (dates - dates.astype("datetime64[M]")).astype(int) + 1
    payday = np.isin(dom, [25, 26, 27])         # gajian
    scale = ctx.n_customers / 20_000.0
    for camp, (chn, fixed, cpc, mult) in SPEND_MODEL.items():
        noise = np.exp(rng.normal(0, 0.15, nd))
        fixed = fixed * scale
        if chn == "marketplace":
            s = fixed * (1 + 0.3 * (weekday >= 5)) * noise + cpc * ctx.mp_revenue
        else:
            ci = CAMP[camp]
            clicks = ctx.spend_counts[:, ci] + 0.2 * ctx.spend_impr[:, ci]
            s = (fixed * (1 + 0.5 * payday) + cpc * mult * clicks) * noise
        s = np.round(s / 100.0) * 100.0
        rows_d.append(days)
        rows_ch.append(np.full(nd, CH[chn]))
        rows_c.append(np.full(nd, camp, dtype=object))
        rows_s.append(s)
    d = np.concatenate(rows_d)
    chn = np.concatenate(rows_ch)
    campaign = np.concatenate(rows_c)
    sp = np.concatenate(rows_s)
    order = np.lexsort((campaign.astype(str), chn, d))
    return pa.table({"date": _ts(d[order]), "channel": _take(CHANNELS, chn[order]),
                     "spend": pa.array(sp[order], pa.float64()),
                     "campaign": pa.array(list(campaign[order]), pa.string())})


# ============================================================================= truth json
def _r(x, k=6):
    return round(float(x), k)


def _truth_json(ctx: _Ctx, price_truth, n_customers, seed) -> dict:
    a = ctx.acc
    nseg = {s: a.get(f"segment_n_{s}", 0) for s in SEG_NAMES}
    segs = {}
    for i, s in enumerate(SEGMENTS):
        segs[s["name"]] = {
            "design_share": s["share"], "n_customers": nseg[s["name"]],
            "channel_mix": dict(zip(SALES, s["mix"])), "channel_mix_concentration": s["conc"],
            "lambda_gamma": {"shape": s["lam_shape"], "mean_per_day": s["lam"]},
            "p_dropout_beta": {"a": _r(s["p"] * s["p_conc"]), "b": _r((1 - s["p"]) * s["p_conc"]),
                               "mean": s["p"]},
            "mean_order_value_idr": s["spend"], "discount_propensity": s["disc"],
            "return_rate": s["ret"], "ticket_rate_per_order": s["tick"], "nps_latent_mean": s["nps"],
            "realised_nps_mean": _r(a.get(f"nps_sum_{s['name']}", 0) / max(a.get(f"nps_n_{s['name']}", 0), 1), 4),
            "mean_items": s["items"], "service_channel_mix": dict(zip(SERVICE, s["service"])),
            "robo_prob_per_store_order": s["robo"], "showrooming_prob_per_online_order": s["show"],
            "store_to_store_prob_per_store_order": s["s2s"],
        }
    exps = {}
    for xp in EXPERIMENTS:
        acc = ctx.exp_acc[xp["id"]]
        ntot = sum(v["n"] for v in acc.values())
        ctrl = xp["variants"][0][0]
        rate_ctrl = acc[ctrl]["p_sum"] / max(acc[ctrl]["n"], 1)
        vs = {}
        for vn, share, lift in xp["variants"]:
            v = acc[vn]
            er = v["p_sum"] / max(v["n"], 1)
            vs[vn] = {
                "is_control": vn == ctrl, "planned_share": share, "true_lift": lift,
                "design_conversion_rate": _r(xp["base"] * (1 + lift)),
                "expected_conversion_rate": _r(er),
                "expected_lift_vs_control": _r(er / rate_ctrl - 1) if rate_ctrl > 0 else None,
                "n_units": v["n"], "realised_share": _r(v["n"] / max(ntot, 1)),
                "conversions": v["conv"], "realised_conversion_rate": _r(v["conv"] / max(v["n"], 1)),
                "orders": v["orders"], "returned_orders": v["returned"],
                "realised_return_rate": _r(v["returned"] / max(v["orders"], 1)),
                "completed_revenue": _r(v["revenue"], 2),
            }
            if "return_rate" in xp:
                vs[vn]["true_return_rate"] = xp["return_rate"][vn]
        e = {
            "name": xp["name"], "channel": xp["channel"], "campaign": xp["id"],
            "enrollment_start": xp["start"], "enrollment_days": xp["enroll_days"],
            "window_days": xp["window_days"], "n_units": ntot, "variants": vs,
            "metric": ("conversion = the unit has a touchpoint with event_type 'purchase' and "
                       f"campaign '{xp['id']}' (its order is in orders via order_id) within "
                       "window_days after assigned_at"),
            "heterogeneity": "p_i = base * (1 + lift) * sqrt(lambda_i) / mean(sqrt(lambda)) "
                             "over eligible units of the chunk, clipped at 0.95",
        }
        if "srm_realised_share_A" in xp:
            e["sample_ratio_mismatch"] = {
                "planted": True, "planned_share_A": 0.5, "design_realised_share_A": xp["srm_realised_share_A"],
                "mechanism": "about 11% of B units were lost before logging, twice as often "
                             "low-engagement ones; the naive B lift is biased upwards, true lift 0"}
        if "steps" in xp:
            e["workflow"] = [{"step": s[0], "after_hours": _r(s[1] * 24, 3), "channel": s[2],
                              "share_of_treatment_conversions": s[3]} for s in xp["steps"]]
            e["discount_after_step"] = {"step": xp["steps"][1][0], "discount_share": xp["step_discount"]}
        if "return_rate" in xp:
            e["guardrail"] = "return rate (status == 'returned') of the experiment's orders; B is harmful"
        exps[xp["id"]] = e
    app_rev = a.get("app_revenue", 0.0)
    pat_store = max(a.get("pattern_store_orders", 0), 1)
    return {
        "generator_version": GENERATOR_VERSION, "seed": seed, "n_customers": n_customers,
        "company": DEFAULTS["company"],
        "files": {
            "truth/customers.parquet": "one row per customer: segment, lambda, p_dropout, acquired_at, "
                                      "alive_at_end, dropout_time, n_orders (all orders), "
                                      "n_orders_process, bought_last_6m, expected_order_value, ...",
            "truth/identity_links.parquet": "record_id -> customer_id for every identities row",
            "truth/orders.parquet": "one row per order: origin (process / experiment), experiment_id, "
                                   "pattern (robo / showrooming / store_to_store), app_cannibalised, journey_id",
            "truth/journeys.parquet": "marketing journeys of the noisy-OR model (non-converting "
                                     "journeys with no touches are omitted)",
            "truth/experiment_units.parquet": "per experiment unit: p_convert, converted, order_id",
        },
        "segments": segs,
        "purchase_process": {
            "model": "BG/NBD-like: first order at acquisition; repeat orders Poisson(lambda) per day "
                     "while alive; after each repeat order the customer drops out with probability p",
            "lambda_unit": "orders per day", "time_unit": "days",
            "acquisition": "first_seen spread over the period with density proportional to "
                           "1 - 0.5 t/T (58% in the first year); app_first_young_urban: 15% "
                           "before the app launch, 85% after",
            "spend_model": {"model": "Gamma-Gamma", "p": GG_P, "q": GG_Q,
                            "gamma": "mean_order_value * (q - 1) / p per segment",
                            "rounding": "net_amount clipped to 50,000..5,000,000 IDR and rounded to 100"},
            "experiment_orders": "orders with origin 'experiment' are extra orders caused by the "
                                 "experiments; n_orders_process excludes them",
            "alive_definition": "alive_at_end = has not dropped out by data_end; dropout_time is "
                                "the time of the last repeat order of a customer who dropped out",
            "churn_window_start": DEFAULTS["churn_window_start"],
            "bought_last_6m": "any order (any origin) on or after churn_window_start",
        },
        "churn": {"n_alive_at_end": None},
        "identity": {
            "n_records": a.get("identity_records", 0), "n_no_usable_key": a.get("identity_no_key", 0),
            "records_per_customer": "one per sales channel used (web, app, marketplace, store, "
                                    "whatsapp) plus 35% of unused channels in the customer's set; max 4",
            "noise": {"email": "case 7% upper / 5% capitalised, whitespace 7%, 10% alternate "
                               "address, 3% typo in the local part, missing by source",
                      "phone": "formats 08.. / 8.. / 62.. / +62 8xx-xxxx-xxx / 08xx-xxxx-xxx / "
                               "+628.. / 08xx xxxx xxx; 6% a second number; missing by source",
                      "name": "titles (Bpk., Bapak, Pak, Sdr., Ibu, Bu, Sdri.) 12%, typos 6% first "
                              "/ 4% last, upper 12% / lower 8%, stray whitespace, WhatsApp first "
                              "name only 35%",
                      "missing_by_source": {s: dict(zip(("email", "phone", "full_name"), v))
                                            for s, v in SOURCE_MISSING.items()},
                      "no_usable_key_share": NO_KEY_SHARE},
            "loyalty_id": "store records carry the card number (95%); 30% of web/app records of "
                          "card holders carry it too",
        },
        "channel_contributions": _journey_truth() | {
            "n_converting_journeys": a.get("journeys_converting", 0),
            "n_nonconverting_journeys": a.get("journeys_nonconverting", 0),
            "n_nonconverting_journeys_without_touches": a.get("journeys_nonconverting_empty", 0),
            "n_nonconverting_journeys_not_placed": a.get("journey_nonconverting_shortfall", 0),
            "n_converting_journeys_without_touches": a.get("journeys_converting_empty", 0),
            "lookback_days": DEFAULTS["journey_lookback_days"],
            "campaigns": {c: [x for x, _ in v] for c, v in CAMPAIGNS_BY_MKT.items()},
            "social_ad_impression_share": SOCIAL_IMPRESSION_SHARE,
        },
        "funnel": {
            "stages": ["visit", "product_view", "add_to_cart", "checkout", "purchase"],
            "continuation_prob": {c: dict(zip(("visit->product_view", "product_view->add_to_cart",
                                               "add_to_cart->checkout", "checkout->purchase"), v))
                                  for c, v in FUNNEL.items()},
            "session_conversion": {c: _r(np.prod(v)) for c, v in FUNNEL.items()},
            "anonymous_share_of_failed_sessions": ANON_SHARE,
            "notes": "sessions = touchpoints session_id on web/app/marketplace with no campaign "
                     "(experiment sessions carry their experiment id); failed sessions happen "
                     "within 2 days before an online order; ROBO research sessions (visit + "
                     "product_view before a store order) are part of the failed sessions that "
                     "stop at product_view, so the continuation rates hold for all sessions",
            "n_sessions": {c: {"converting": a.get(f"funnel_converting_sessions_{c}", 0),
                               "failed": a.get(f"funnel_failed_sessions_{c}", 0)
                               + a.get(f"funnel_robo_sessions_{c}", 0)} for c in FUNNEL},
        },
        "journey_patterns": {
            "robo": {"definition": "store order preceded by a web/app session with product_view "
                                   "0.3-5 days before (same customer)",
                     "n_orders": a.get("pattern_robo", 0),
                     "share_of_store_orders": _r(a.get("pattern_robo", 0) / pat_store)},
            "showrooming": {"definition": "online order preceded by a store visit (event_type visit, "
                                          "channel store) 0.1-7 days before",
                            "n_orders": a.get("pattern_showrooming", 0),
                            "share_of_online_orders_with_home_store": _r(
                                a.get("pattern_showrooming", 0) / max(a.get("pattern_online_orders_with_home_store", 0), 1))},
            "store_to_store": {"definition": "store order preceded by an inquiry (channel store) at "
                                             "another store 0.2-10 days before",
                               "n_orders": a.get("pattern_store_to_store", 0),
                               "share_of_store_orders": _r(a.get("pattern_store_to_store", 0) / pat_store)},
            "n_store_orders_process": a.get("pattern_store_orders", 0),
            "per_order_flags": "truth/orders.parquet column pattern",
        },
        "app_launch": {
            "date": DEFAULTS["app_launch"],
            "mechanism": "customers whose channel set includes the app shopped on web before the "
                         "launch; after it those orders go to the app (cannibalised, counterfactual "
                         "channel web). Customers whose first order was in the app were acquired by "
                         "the app (incremental). Purchase rates are unchanged by the launch.",
            "app_orders": a.get("app_orders", 0),
            "app_revenue": _r(app_rev, 2),
            "cannibalised_share": _r(a.get("app_revenue_cannibalised", 0.0) / app_rev) if app_rev else None,
            "cannibalised_share_orders": _r(a.get("app_orders_cannibalised", 0) / max(a.get("app_orders", 0), 1)),
            "incremental_share": _r(1 - a.get("app_revenue_cannibalised", 0.0) / app_rev) if app_rev else None,
            "revenue_definition": "net_amount of non-cancelled orders",
            "app_customers": a.get("app_customers", 0),
            "app_acquired_customers": a.get("app_customers_incremental", 0),
        },
        "experiments": exps,
        "experiment_pre_period_days": DEFAULTS["pre_period_days"],
        "surveys": {
            "nps_model": "nps = round(segment nps_latent_mean + channel effect + customer effect "
                         "N(0, 0.6) + N(0, 1.1)) clipped 0..10; returned orders -1.5; ticket "
                         "surveys +0.3 if resolved at first contact else -1.2",
            "channel_effect": NPS_CHANNEL_EFFECT,
            "csat": "round(1 + 4 * (latent + N(0,1)) / 10) clipped 1..5",
            "ces": "round(1 + 6 * (latent + N(0,1.4)) / 10) clipped 1..7; higher = easier",
            "awareness_question": "Dari mana anda mengetahui tentang produk kami?",
            "awareness_vocabulary": {ans.lower(): c for c, v in AWARENESS.items() for ans in v},
            "awareness_mapping_note": "map lower-cased, stripped answers; 25% skipped (null)",
            "awareness_by_acquisition_channel": {k: dict(zip(AW_CATS, v)) for k, v in _AW_BY_ACQ.items()},
        },
        "tickets": {
            "fcr_design": TICKET_FCR, "first_response_median_minutes": TICKET_RESPONSE_MEDIAN_MIN,
            "fcr_definition": "contacts == 1",
            "realised_fcr": _r(a.get("tickets_fcr", 0) / max(a.get("tickets", 0), 1)),
            "realised_fcr_by_channel": {s: _r(a.get(f"tickets_fcr_{s}", 0) / max(a.get(f"tickets_{s}", 0), 1))
                                        for s in SERVICE},
            "unresolved_share": 0.02,
        },
        "prices": {"mismatched_skus": price_truth,
                   "notes": "every other SKU has the same price on web, app, marketplace and store "
                            "at every observation; promotions apply to all channels at once"},
        "spend": {"model": {k: {"channel": v[0], "fixed_daily_per_20k_customers": v[1],
                                "cost_per_tracked_click": v[2], "untracked_audience_multiplier": v[3]}
                            for k, v in SPEND_MODEL.items()},
                  "formula": "spend = (fixed_daily * n_customers / 20000 * (1.5 on paydays 25-27) + "
                             "cost_per_tracked_click * multiplier * (clicks + 0.2 * impressions)) "
                             "* lognormal(0, 0.15), rounded to 100",
                  "mp_sponsored_ads": "fixed_daily (x1.3 at weekends) plus 3.5% of marketplace revenue"},
        "consent": {"design_share_without_analytics_consent": 0.05,
                    "n_without_analytics_consent": a.get("customers_no_analytics_consent", 0),
                    "design_share_marketing_consent": 0.70},
        "anonymous_events": "touchpoints.customer_id is null for anonymous events",
    }


# ============================================================================= main
def _atomic_replace(tmp: Path, out: Path):
    out = out.resolve()
    if out.exists():
        ours = (out / "meta.json").exists() or not any(out.iterdir())
        if ours:
            old = out.with_name(out.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                dest = out / p.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)


def _dump_json(obj, path: Path):
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default) + "\n",
                    encoding="utf-8")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def generate(out_dir=DEFAULTS["out_dir"], n_customers: int = DEFAULTS["n_customers"],
             seed: int = DEFAULTS["seed"], progress: bool = False) -> dict:
    """Generate the sample retailer into ``out_dir`` and return a summary.

    Returns ``{"out_dir", "seed", "n_customers", "rows": {table: n}, "truth_rows": {...},
    "seconds"}``.  Same ``(seed, n_customers)`` -> byte-identical files.
    """
    t_start = time.perf_counter()
    n_customers = int(n_customers)
    if n_customers < 1:
        raise ValueError("n_customers must be >= 1")
    seed = int(seed)
    out = Path(out_dir)
    tmp = out.resolve().with_name(out.resolve().name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    ss_global, ss_chunks = np.random.SeedSequence(seed).spawn(2)
    ss_cat, ss_prices, ss_spend = ss_global.spawn(3)
    catalogue = _catalogue(np.random.default_rng(ss_cat))
    ctx = _Ctx(n_customers, catalogue)
    n_chunks = (n_customers + CHUNK_SIZE - 1) // CHUNK_SIZE
    chunk_seeds = ss_chunks.spawn(n_chunks)
    writer = _Writer(tmp)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm
        # a log file gets a plain line per chunk, not a redrawn bar
        bar = tqdm(total=n_chunks + 1, desc="omni sample", unit="chunk", file=sys.stderr,
                   disable=not sys.stderr.isatty())
        if bar.disable:
            _plain = bar

            class _Lines:
                def __init__(self):
                    self.n = 0

                def set_postfix_str(self, s):
                    pass

                def update(self, k=1):
                    self.n += k
                    print(f"omni sample: {self.n}/{n_chunks + 1} chunks", file=sys.stderr, flush=True)

                def close(self):
                    _plain.close()

            bar = _Lines()
    try:
        for i in range(n_chunks):
            n = min(CHUNK_SIZE, n_customers - i * CHUNK_SIZE)
            step = None
            if bar is not None:
                def step(s, i=i):
                    bar.set_postfix_str(f"chunk {i + 1}/{n_chunks}: {s}")
            _gen_chunk(ctx, np.random.default_rng(chunk_seeds[i]), n, writer, step)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.set_postfix_str("spend, prices, truth")
        prices, price_truth = _prices_table(np.random.default_rng(ss_prices), catalogue)
        writer.write("prices", prices)
        writer.write("spend", _spend_table(np.random.default_rng(ss_spend), ctx))
        writer.close()
        truth = _truth_json(ctx, price_truth, n_customers, seed)
        tc = pq.read_table(tmp / "truth" / "customers.parquet", columns=["alive_at_end", "bought_last_6m"])
        truth["churn"] = {"n_alive_at_end": int(pc.sum(tc["alive_at_end"]).as_py() or 0),
                          "n_bought_last_6m": int(pc.sum(tc["bought_last_6m"]).as_py() or 0),
                          "window_start": DEFAULTS["churn_window_start"]}
        _dump_json(truth, tmp / "truth" / "truth.json")
        rows = {t: writer.rows.get(t, 0) for t in TABLES}
        truth_rows = {k: v for k, v in writer.rows.items() if k.startswith("truth/")}
        meta = {
            "generator": "omni_lib.sample", "generator_version": GENERATOR_VERSION,
            "company": DEFAULTS["company"], "seed": seed, "n_customers": n_customers,
            "chunk_size": CHUNK_SIZE, "timezone": TZ, "currency": DEFAULTS["currency"],
            "period_start": DEFAULTS["period_start"], "period_end": DEFAULTS["period_end"],
            "data_end": DEFAULTS["data_end"], "app_launch": DEFAULTS["app_launch"],
            "channels": list(CHANNELS), "stores": [dict(zip(("store_id", "name", "city"), s)) for s in STORES],
            "rows": rows, "truth_rows": truth_rows,
            "files": {t: f"{t}.parquet" for t in TABLES},
            "truth": "truth/truth.json",
        }
        _dump_json(meta, tmp / "meta.json")
        _atomic_replace(tmp, out)
    except BaseException:
        writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.update(1)
            bar.close()
    return {"out_dir": str(out), "seed": seed, "n_customers": n_customers, "rows": rows,
            "truth_rows": truth_rows, "seconds": round(time.perf_counter() - t_start, 2)}


def true_keyed(out_dir) -> dict[str, pd.DataFrame]:
    """The sample's tables as if keyed by the true person: for scoring and tests only.

    The generated data is siloed (rows name channel records, as real exports do); this adds
    each row's planted ``customer_id`` (from ``truth/identity_links``; experiments through
    ``unit_id``) and the CRM-style ``customers`` table held in ``truth/customers``.
    """
    d = Path(out_dir)
    links = pd.read_parquet(d / "truth" / "identity_links.parquet",
                            columns=["record_id", "customer_id"]).set_index("record_id")["customer_id"]
    out: dict[str, pd.DataFrame] = {}
    for t in TABLES:
        df = pd.read_parquet(d / f"{t}.parquet")
        key = "unit_id" if t == "experiments" else "record_id"
        if t != "identities" and key in df:
            df["customer_id"] = df[key].map(links).astype(df[key].dtype)
        out[t] = df
    tc = pd.read_parquet(d / "truth" / "customers.parquet")
    out["customers"] = tc[["customer_id", "first_seen", "acquisition_channel", "region",
                           "consent_analytics", "consent_marketing"]]
    return out
