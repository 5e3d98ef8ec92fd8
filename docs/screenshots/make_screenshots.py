"""Screenshots of one sample run's reports (1400 px wide, top of each page), kept small.

    python docs/screenshots/make_screenshots.py [RUN_FOLDER]    (default: reports/latest)

Needs Chromium (`make browser`) and Pillow (matplotlib's dependency) to shrink the PNGs.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from browser_tools import screenshot  # noqa: E402

PAGES = {"index": 1800, "00_data_health": 2000, "02_channel_performance": 2000, "03_attribution_journeys": 2000,
         "04_segmentation": 2000, "05_churn": 2000, "06_cltv": 2000, "07_ab_test": 2000}


def main(run: Path) -> None:
    from PIL import Image

    out = Path(__file__).resolve().parent
    for page, height in PAGES.items():
        png = out / f"{page}.png"
        screenshot(run / f"{page}.html", png, height=height)
        im = Image.open(png).convert("RGB")
        im = im.resize((700, int(im.height * 700 / im.width)), Image.LANCZOS)
        im.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
        print(f"{png.relative_to(ROOT)}: {png.stat().st_size // 1024} kB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "reports" / "latest")
