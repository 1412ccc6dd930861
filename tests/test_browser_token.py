"""
The dashboard against a server whose reads need the token (headless
Chromium, as in L{test_browser}): the page asks for the token, keeps it in
localStorage and sends it with every request, the export download included.
"""

import time

from test_browser import WAIT_MS, Watch, browser, context, send_tuples, wait_for_rows  # noqa: F401

TOKEN = "browser-token-0123456789"
KEYS = ["tok.a", "tok.b;host=web1"]


def test_token_prompt_then_list(make_server, context, tmp_path):  # noqa: F811
    """With --read-token on, the page prompts for the token, then lists the series; a reload needs no prompt."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    server = make_server("--bind", "127.0.0.1", "--read-token", "on",
                         "--api-token-file", str(token_file)).start()
    now = time.time()
    send_tuples(server, [["tok.a", now - 10, 1], ["tok.b", now - 10, 2, {"host": "web1"}]])

    watch = Watch()
    page = watch.attach(context.new_page())
    page.goto(server.base_url + "/")
    page.wait_for_selector("#token-modal.show #token-input", timeout=WAIT_MS)
    assert "needs its API token" in page.inner_text("#token-reason")
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    wait_for_rows(page, KEYS)
    page.wait_for_selector("#token-modal", state="hidden", timeout=WAIT_MS)
    assert page.evaluate("window.localStorage.getItem('simplestats.apiToken')") == TOKEN

    # The export link cannot carry a header: the page fetches it with the token.
    with page.expect_download(timeout=WAIT_MS) as download:
        page.click("#export-btn")
        page.click("#export-ndjson")
    path = download.value.path()
    with open(path, "rb") as f:
        exported = f.read()
    assert b"tok.a" in exported and b"tok.b" in exported

    page.reload()
    wait_for_rows(page, KEYS)
    assert not page.is_visible("#token-modal")

    # A wrong token kept in the browser: the prompt says it was refused.
    page.evaluate("window.localStorage.setItem('simplestats.apiToken', 'wrong-token-0123456789')")
    page.reload()
    page.wait_for_selector("#token-modal.show #token-input", timeout=WAIT_MS)
    assert "refused" in page.inner_text("#token-reason")
    watch.check(page)
    server.stop()
