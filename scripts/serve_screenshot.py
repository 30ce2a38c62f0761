"""A screenshot of the `moslim serve` page after one question, for the README.

    moslim serve --policy runs/demo/rl/final --reward-model runs/demo/rm --port 8000 &
    python scripts/serve_screenshot.py --url http://127.0.0.1:8000 --a verbosity=0 --b verbosity=3 \
        --out docs/images/serve-page.png

Drives Debian's chromium (or $MOSLIM_CHROMIUM) headless through Playwright: sets each setting's sliders
to the given preference, asks the question, waits for both streamed answers and their levels.
"""

from __future__ import annotations

import argparse
import os
import shutil

from playwright.sync_api import sync_playwright


def set_preference(page, setting: str, preference: str) -> None:
    for part in filter(None, preference.split(",")):
        name, level = part.split("=")
        slider = page.locator(f"[data-setting='{setting}'] [data-objective='{name}'] input[type=range]")
        slider.evaluate("(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--question", default="How do I boil an egg?")
    parser.add_argument("--a", default="verbosity=0", help="setting A's preference, e.g. verbosity=0")
    parser.add_argument("--b", default="verbosity=3", help="setting B's preference")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--out", default="docs/images/serve-page.png")
    args = parser.parse_args()
    executable = os.environ.get("MOSLIM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(args.url.rstrip("/") + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        set_preference(page, "a", args.a)
        set_preference(page, "b", args.b)
        if args.max_tokens:
            page.fill("#max-tokens", str(args.max_tokens))
        page.fill("#question", args.question)
        page.click("#ask")
        for setting in ("a", "b"):
            page.wait_for_selector(f"[data-setting='{setting}'][data-done='1']", timeout=300_000)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
