"""A real server on 127.0.0.1 (uvicorn in a thread): the page in headless Chromium, the OpenAI SDK over TCP,
verl's compute_score calling the server.

The browser test drives Debian's ``chromium`` through Playwright (its own browser download is not
needed); without them it is skipped, except in CI (``CI=true``), where ``.ci/run`` installs them.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from moslim.serve.app import ServeSettings, create_app
from moslim.serve.verl_reward import compute_score

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])


@pytest.fixture(scope="module")
def server(engine):
    """Base URL of a live server; answers never end early (no end-of-sequence id) so each one streams."""
    endless = copy.copy(engine)
    endless.eos_ids = []
    yield from serve(create_app(endless, ServeSettings(default_max_tokens=12, max_tokens=16)))


def serve(app):
    """Run ``app`` on a free 127.0.0.1 port in a thread; yield its base URL once it answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert server.started, "the server did not start within 30 s"
        yield f"http://127.0.0.1:{port}"
    finally:  # also when a test leaves its `for base in serve(...)` loop by failing
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_openai_sdk_streams_over_tcp(server):
    import openai

    sdk = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    stream = sdk.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True,
                                         extra_body={"preferences": {"verbosity": 1}})
    chunks = [c for c in stream if c.choices]
    assert sum(1 for c in chunks if c.choices[0].delta.content) >= 2  # the answer arrived in pieces
    assert chunks[-1].choices[0].finish_reason == "length"


def test_verl_compute_score_calls_the_server(server, client):
    info = {"question": "how can i help the cat ?", "preference": "verbosity=2"}
    remote = compute_score("moslim", "safe good answer", None, info, url=server)
    pair = {"prompt": info["question"], "response": "safe good answer", "preferences": {"verbosity": 2}}
    expected = client.post("/v1/score", json={"items": [pair]}).json()["results"][0]
    assert remote["score"] == pytest.approx(expected["reward"], abs=1e-5)
    assert remote["verbosity_level"] == pytest.approx(expected["expected_levels"]["verbosity"], abs=1e-4)


def chromium_path() -> str | None:
    return os.environ.get("MOSLIM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        reason = "the browser test needs Playwright and Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run installs them in CI")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def test_page_slider_question_streamed_answers_and_levels(server, browser, engine, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    setting_a, setting_b = page.locator("[data-setting='a']"), page.locator("[data-setting='b']")
    assert setting_a.locator(".objective").count() == len(engine.objectives)

    described = engine.objectives["verbosity"].level_descriptions
    setting_a.locator("[data-objective='verbosity'] input[type=range]").press("ArrowRight")  # 0 -> 1
    setting_b.locator("[data-objective='verbosity'] input[type=range]").press("ArrowLeft")  # 3 -> 2
    row_a = setting_a.locator("[data-objective='verbosity']")
    assert row_a.locator(".named").is_checked()  # moving a slider names its objective
    assert row_a.locator(".description").inner_text() == described[1]
    assert setting_b.locator("[data-objective='verbosity'] .description").inner_text() == described[2]
    assert row_a.locator(".level").inner_text() == "level 1 of 0-3"

    page.fill("#question", "what is the capital of france ?")
    page.click("#ask")
    for setting in (setting_a, setting_b):
        setting.locator(".levels tbody tr").first.wait_for(timeout=30_000)
        page.wait_for_function("(node) => node.dataset.done === '1'", arg=setting.element_handle(), timeout=30_000)
        assert int(setting.get_attribute("data-chunks")) >= 2  # the answer streamed in pieces
        assert setting.locator(".answer").inner_text().strip()
        levels = setting.locator(".levels tbody tr")
        assert levels.count() == len(engine.objectives)
        assert setting.locator(".levels [data-objective='verbosity'] .rm-level").inner_text()[0].isdigit()
    assert "level 1 of 0-3" in setting_a.locator(".system pre").text_content()  # inside a closed <details>
    assert setting_a.locator(".levels [data-objective='verbosity'] td").nth(1).inner_text() == "1"
    assert not page.locator("#error").is_visible()

    shot = Path(os.environ.get("MOSLIM_SCREENSHOT") or tmp_path / "serve-page.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_health_reports_batches(server):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["generation"]["batches"] >= 1


def test_a_client_leaving_mid_stream_does_not_stop_the_server(server):
    body = {"model": "tiny", "stream": True, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    # the closed stream's rows stop at the next step; the server answers the next request in full
    done = httpx.post(f"{server}/v1/chat/completions", json={**body, "stream": False}).json()
    assert done["choices"][0]["finish_reason"] == "length" and done["usage"]["completion_tokens"] == 16


def test_page_asks_for_the_api_key_when_the_server_has_one(engine, browser):
    for base in serve(create_app(engine, ServeSettings(api_key="secret", default_max_tokens=4))):
        page = browser.new_page()
        page.goto(base + "/")
        page.wait_for_selector("#key-box:not([hidden])", timeout=15_000)
        assert "missing API key" in page.locator("#error").inner_text()
        page.fill("#api-key", "secret")
        page.locator("#api-key").dispatch_event("change")
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        assert page.locator("[data-setting='a'] .objective").count() == len(engine.objectives)
        page.close()
