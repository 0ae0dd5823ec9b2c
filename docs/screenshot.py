"""Take ``docs/dashboard.png``: the web dashboard of a real ``digitalme serve`` under traffic.

Starts the program on a fresh data directory (embedded SQLite, default settings
but raised rate limits and the 15-minute window's 10 s chart steps refreshed
every 15 s), signs in as the admin in headless Chromium (Debian's, as the
tests do), sends a few minutes of mixed traffic (profile writes and reads by a
user, unauthenticated calls answered 401, unknown paths answered 404, a slow
endpoint, one SQL injection that raises a Critical alert), and screenshots the
page. Every figure in the picture is what the program measured.

Run: ``.venv/bin/python docs/screenshot.py [--minutes 3] [--out docs/dashboard.png]``
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import launch
from serve_process import ServeProcess

ADMIN = "admin@localhost"
PASSWORD = "a long admin password"
USER = "ada@example.com"
CONFIG = """
security:
  rate_limit_per_ip: "100000/minute"
  rate_limit_per_user: "100000/minute"
"""


def traffic(base: str, seconds: float) -> None:
    """About 20 requests a second of mixed traffic for ``seconds``."""
    with httpx.Client(base_url=base, timeout=30) as client:
        admin = client.post("/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
        admin_headers = {"Authorization": f"Bearer {admin.json()['access_token']}"}
        client.post(
            "/api/users",
            json={"email": USER, "password": "a user password", "role": "User"},
            headers=admin_headers,
        )
        login = client.post("/api/auth/login", json={"email": USER, "password": "a user password"})
        user = {"Authorization": f"Bearer {login.json()['access_token']}"}
        profiles: list[int] = []
        deadline = time.monotonic() + seconds
        attacked = False
        while time.monotonic() < deadline:
            roll = random.random()
            if roll < 0.15:
                created = client.post(
                    "/api/personality",
                    json={"name": f"Profile {len(profiles)}", "data": {"tone": "warm"}},
                    headers=user,
                )
                profiles.append(created.json()["id"])
            elif roll < 0.6 and profiles:
                client.get(f"/api/personality/{random.choice(profiles)}", headers=user)
            elif roll < 0.8:
                client.get("/api/personality", headers=user)
            elif roll < 0.9:
                client.get("/api/personality")  # 401
            elif roll < 0.97:
                client.get(f"/api/nothing-here/{random.randint(1, 99)}")  # 404
            else:
                client.post("/test/slow-endpoint", params={"seconds": random.uniform(0.2, 0.8)})
            if not attacked and time.monotonic() > deadline - seconds / 2:
                client.get("/api/personality", params={"q": "1' OR '1'='1"})  # Critical alert
                attacked = True
            time.sleep(random.expovariate(20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("dashboard.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "config.yaml"
        config.write_text(CONFIG)
        env = {"DIGITALME_CONFIG": str(config), "DIGITALME_ADMIN_PASSWORD": PASSWORD}
        with ServeProcess(Path(directory), env) as server, sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{server.base_url}/dashboard")
            page.fill("#email", ADMIN)
            page.fill("#password", PASSWORD)
            page.click("#sign-in-button")
            expect(page.locator("#connection")).to_have_text("live")
            page.select_option("#window", "15m")
            traffic(server.base_url, args.minutes * 60)
            time.sleep(16)  # one more chart refresh with the last traffic in it
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
