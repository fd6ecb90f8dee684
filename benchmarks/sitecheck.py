"""Check the built site in a real browser: headless Chromium driven by Playwright, network off.

    python -m benchmarks.sitecheck [HTML_DIR]

Serves HTML_DIR (default _build/smoke/_build/html) on 127.0.0.1, aborts every request to any
other host (and counts it), opens every page and checks: no console errors, mathematics typeset
by the site's own MathJax, no raw Markdown table and no raw TeX left in the text a reader sees
(outside code and typeset mathematics), exactly one visible search box, every image loaded, the
exercise/solution dropdowns open, every animation player (matplotlib's JavaScript slider player)
shows a new frame when its "next frame" button is clicked and another when its slider is moved,
and the search page finds a chapter by a word in it. Internal links and anchors are checked
from the HTML files. Screenshots of the home page and one page per chapter go to
HTML_DIR/../screenshots. Writes benchmarks/results/site_check.json.

Needs Debian's chromium (``apt-get install chromium``) and the ``playwright`` Python package; it
never downloads a browser of its own.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def find_chromium() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("chromium")


@dataclass
class SiteReport:
    pages: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    untypeset_math: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    dropdown_failures: list[str] = field(default_factory=list)
    player_failures: list[str] = field(default_factory=list)
    raw_tables: list[str] = field(default_factory=list)  # "page: line" of Markdown table syntax
    raw_tex: list[str] = field(default_factory=list)  # "page: text" of TeX not typeset
    search_boxes: dict[str, int] = field(default_factory=dict)  # page -> visible search boxes
    search_ok: bool = False
    dropdowns_opened: int = 0
    players: dict[str, int] = field(default_factory=dict)  # page -> players on it
    players_responding: int = 0
    screenshots: list[str] = field(default_factory=list)
    seconds: float = 0.0
    site_bytes: int = 0

    @property
    def problems(self) -> dict[str, list[str]]:
        found = {k: v for k, v in {
            "console_errors": self.console_errors, "external_requests": self.external_requests,
            "untypeset_math": self.untypeset_math, "broken_images": self.broken_images,
            "broken_links": self.broken_links, "dropdown_failures": self.dropdown_failures,
            "player_failures": self.player_failures, "raw_tables": self.raw_tables,
            "raw_tex": self.raw_tex,
            "search_boxes": [f"{page}: {n} visible search boxes, not 1"
                             for page, n in self.search_boxes.items() if n != 1],
        }.items() if v}
        if not self.search_ok:
            found["search"] = ["the search page did not find the probability chapter for 'Jensen'"]
        return found


def content_pages(html_dir: Path) -> list[Path]:
    """Every page of the book proper (not Sphinx's generated index/search pages)."""
    skip = {"genindex.html", "search.html", "prf-prf.html"}
    return sorted(p for p in html_dir.rglob("*.html")
                  if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts)


def check_links(html_dir: Path, pages: list[Path]) -> list[str]:
    """Every internal link resolves to a file, and every #anchor to an id in that file."""
    ids: dict[Path, set[str]] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in ids:
            soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
            ids[path] = {tag["id"] for tag in soup.find_all(id=True)}
        return ids[path]

    broken = []
    for page in pages:
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for tag in soup.find_all(["a", "link"], href=True):
            href = tag["href"]
            if urlparse(href).scheme or href.startswith(("mailto:", "//", "javascript:")):
                continue
            target, anchor = urldefrag(href)
            target = urlparse(target).path  # drop ?v=... cache-busting queries
            path = (page.parent / unquote(target)).resolve() if target else page
            if path.is_dir():
                path = path / "index.html"
            rel = page.relative_to(html_dir)
            if not path.exists():
                broken.append(f"{rel}: {href} (no such file)")
            elif anchor and path.suffix == ".html" and unquote(anchor) not in ids_of(path):
                broken.append(f"{rel}: {href} (no anchor #{anchor})")
    return broken


# What a reader sees as text: the article without code, typeset mathematics (MathJax's
# mjx-container) and things never shown. Block elements start a new line, as in the browser.
NOT_READ_AS_TEXT = ["script", "style", "noscript", "template", "pre", "code", "kbd", "samp", "svg",
                    "math", "textarea", "mjx-container", "[hidden]"]
BLOCKS = ["address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "dialog",
          "div", "dl", "dt", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
          "h6", "header", "hr", "li", "main", "nav", "ol", "p", "section", "summary", "table", "tbody",
          "td", "tfoot", "th", "thead", "tr", "ul"]
# A Markdown table left as text: a row "| a | b |" or a rule "|---|" / "| :--- |".
RAW_TABLE_ROW = re.compile(r"^\s*\|.*\|.*\|\s*$")
RAW_TABLE_RULE = re.compile(r"\|\s*:?-{3,}:?\s*\|")
# TeX left as text: $$, \frac{...}, \begin{...}, \( or \[ delimiters, any \command, or $...$.
RAW_TEX = re.compile(r"\$\$|\\(?:begin|end)\{|\\[(\[]|(?<![\w\\])\\[A-Za-z]{2,}|\$[^$\n]+\$")


def visible_text(html: str) -> list[str]:
    """The lines of text a reader sees in a page's article (the whole body when there is no
    article element), leaving out code, typeset mathematics and hidden elements."""
    soup = BeautifulSoup(html, "html.parser")
    root = soup.select_one("article") or soup.select_one("main") or soup.body or soup
    for tag in root.select(", ".join(NOT_READ_AS_TEXT)):
        tag.decompose()
    for tag in root.find_all(BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    return [line.strip() for line in root.get_text("").split("\n") if line.strip()]


def raw_markdown_tables(html: str) -> list[str]:
    """Lines of a page's visible text that are Markdown table syntax, not a rendered table."""
    return [line[:100] for line in visible_text(html)
            if RAW_TABLE_ROW.match(line) or RAW_TABLE_RULE.search(line)]


def raw_tex(html: str) -> list[str]:
    """Pieces of TeX in a page's visible text: mathematics that MathJax did not typeset."""
    return [match.group(0)[:100] for line in visible_text(html) for match in RAW_TEX.finditer(line)]


# Every search entry point of the theme (the "Search Ctrl+K" field, the header's magnifier
# button, a search form), counted when the browser lays it out with a size and shows it.
COUNT_SEARCH_BOXES = """() => Array.from(document.querySelectorAll(
        '.search-button__button, input[type=search], #searchbox input'))
    .filter(e => !e.closest('dialog:not([open])'))
    .filter(e => { const r = e.getBoundingClientRect(), s = getComputedStyle(e);
                   return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'; }).length"""


def count_search_boxes(page) -> int:
    """Search boxes a reader sees on the open Playwright ``page`` (scrolled anywhere)."""
    return page.evaluate(COUNT_SEARCH_BOXES)


# A player is matplotlib's to_jshtml output: <div class="animation"> holding the frame <img>, a
# range <input> and buttons; its script sets the img's src to a data: URL once the page is parsed.
PLAYERS_READY = """() => Array.from(document.querySelectorAll('div.animation img')).every(
    i => (i.getAttribute('src') || '').startsWith('data:') && i.complete && i.naturalWidth > 0)"""
REFRESH = re.compile(r'<meta[^>]+http-equiv="refresh"', re.I)
SET_SLIDER = """(e, v) => { e.value = v; e.dispatchEvent(new Event('input', {bubbles: true})); }"""


def check_player(player, label: str) -> str | None:
    """Click the player's "next frame" button, then move its slider to the last frame; each must
    change the frame shown. Returns what went wrong, or None."""
    img, slider = player.locator("img").first, player.locator("input[type=range]").first
    last = int(slider.get_attribute("max") or 0)
    if last < 2:
        return f"{label}: {last + 1} frame(s); a player needs at least 3"
    first_src = img.get_attribute("src")
    button = player.locator("button[title='Next frame']").first
    button.scroll_into_view_if_needed()
    button.click(timeout=5_000)
    next_src = img.get_attribute("src")
    if next_src == first_src or slider.input_value() != "1":
        return f"{label}: the next-frame button did not change the frame"
    slider.evaluate(SET_SLIDER, str(last))
    last_src = img.get_attribute("src")
    if last_src in (first_src, next_src):
        return f"{label}: moving the slider to frame {last} did not change the frame"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output readable
        pass


def check_site(html_dir: Path, screenshot_dir: Path | None = None) -> SiteReport:
    from playwright.sync_api import sync_playwright

    html_dir = html_dir.resolve()
    report = SiteReport()
    start = time.perf_counter()
    report.site_bytes = sum(p.stat().st_size for p in html_dir.rglob("*") if p.is_file())
    pages = content_pages(html_dir)
    report.broken_links = check_links(html_dir, pages)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("Chromium not found: install Debian's package with `apt-get install chromium`")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def gate(route):
                url = route.request.url
                if url.startswith(base) or url.startswith("data:"):
                    route.continue_()
                else:
                    report.external_requests.append(url)
                    route.abort()

            context.route("**/*", gate)
            page = context.new_page()
            current = {"url": ""}
            page.on("console", lambda msg: msg.type == "error" and report.console_errors.append(
                f"{current['url']}: {msg.text}"))
            page.on("pageerror", lambda exc: report.console_errors.append(f"{current['url']}: {exc}"))

            for path in pages:
                rel = path.relative_to(html_dir).as_posix()
                current["url"] = rel
                page.goto(urljoin(base, rel), wait_until="load")
                if REFRESH.search(path.read_text(encoding="utf-8")[:2000]):
                    # a redirect page (jupyter-book's index.html): check where it leads, once it
                    # is there, instead of racing the refresh
                    page.wait_for_url(lambda url: not url.endswith("/" + rel), wait_until="load",
                                      timeout=10_000)
                report.pages.append(rel)
                if page.locator(".math").count():
                    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                           timeout=20_000)
                    page.evaluate("() => MathJax.startup.promise")
                    raw = page.evaluate(
                        "() => Array.from(document.querySelectorAll('.math'))"
                        ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))")
                    report.untypeset_math += [f"{rel}: {t}" for t in raw]
                content = page.content()  # the page as the reader sees it, mathematics typeset
                report.raw_tables += [f"{rel}: {line}" for line in raw_markdown_tables(content)]
                report.raw_tex += [f"{rel}: {tex}" for tex in raw_tex(content)]
                report.search_boxes[rel] = count_search_boxes(page)
                players = page.locator("div.animation")
                if players.count():
                    try:  # the players' scripts fill in their first frame just after parsing
                        page.wait_for_function(PLAYERS_READY, timeout=10_000)
                    except Exception:
                        report.player_failures.append(f"{rel}: a player never showed its first frame")
                broken = page.evaluate(
                    "() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                    ".map(i => i.getAttribute('src'))")
                report.broken_images += [f"{rel}: {src}" for src in broken]
                if screenshot_dir is not None and rel.startswith("book/"):
                    screenshot_dir.mkdir(parents=True, exist_ok=True)
                    shot = screenshot_dir / (rel.replace("/", "_").removesuffix(".html") + ".png")
                    page.screenshot(path=str(shot), full_page=False)
                    report.screenshots.append(str(shot))
                toggles = page.locator("button.toggle-button")
                text_length = "(id) => { const e = document.getElementById(id); return e ? e.innerText.length : -1; }"
                for k in range(toggles.count()):
                    button = toggles.nth(k)
                    target_id = button.get_attribute("data-target")
                    before = page.evaluate(text_length, target_id)
                    button.scroll_into_view_if_needed()
                    button.click()
                    page.wait_for_timeout(100)
                    after = page.evaluate(text_length, target_id)
                    if not after > before >= 0:  # opening a dropdown reveals its hidden text
                        report.dropdown_failures.append(f"{rel}: dropdown {target_id} did not open")
                report.dropdowns_opened += toggles.count() - sum(rel in f for f in report.dropdown_failures)
                if players.count():
                    report.players[rel] = players.count()
                for k in range(players.count()):
                    try:
                        failure = check_player(players.nth(k), f"{rel}: player {k + 1}")
                    except Exception as exc:  # e.g. a button that cannot be clicked
                        failure = f"{rel}: player {k + 1}: {type(exc).__name__}: {str(exc)[:200]}"
                    if failure:
                        report.player_failures.append(failure)
                    else:
                        report.players_responding += 1

            current["url"] = "search.html"
            page.goto(urljoin(base, "search.html?q=Jensen"), wait_until="load")
            try:
                page.wait_for_selector("#search-results a[href*='probability']", timeout=20_000)
                report.search_ok = True
            except Exception:
                report.search_ok = False
            browser.close()
    finally:
        server.shutdown()
    report.seconds = time.perf_counter() - start
    return report


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import write

    argv = sys.argv[1:] if argv is None else argv
    html_dir = Path(argv[0]) if argv else ROOT / "_build" / "smoke" / "_build" / "html"
    report = check_site(html_dir, html_dir.parent / "screenshots")
    payload = {
        "html_dir": str(html_dir),
        "pages_checked": len(report.pages),
        "console_errors": len(report.console_errors),
        "broken_links": len(report.broken_links),
        "external_requests_blocked": len(report.external_requests),
        "untypeset_math": len(report.untypeset_math),
        "broken_images": len(report.broken_images),
        "raw_markdown_table_lines": len(report.raw_tables),
        "raw_tex_pieces": len(report.raw_tex),
        "pages_without_exactly_one_search_box": sum(n != 1 for n in report.search_boxes.values()),
        "dropdowns_opened": report.dropdowns_opened,
        "players_checked": sum(report.players.values()),
        "players_responding": report.players_responding,
        "players_per_page": report.players,
        "search_finds_chapter": report.search_ok,
        "browser_check_seconds": round(report.seconds, 1),
        "site_megabytes": round(report.site_bytes / 2**20, 1),
        "problems": report.problems,
    }
    print(write("site_check", payload).read_text())
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
