"""The live dashboard in a real browser (Debian's headless chromium, driven by Playwright):
log in with the operator's token, find the reference homenet, open it, fail ISP A, and see
the default class move to ISP B on the page within 2 s. A screenshot is kept.

The browser runs inside the controller's namespace (topologies/control_ns.py), which has no
route off this machine: whatever chromium tries to fetch on its own cannot leave.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import time

import pytest

from tests.integration.conftest import NEEDS

pytestmark = [*NEEDS, pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")]

ARTIFACTS = pathlib.Path("/tmp/msp-artifacts")
CHROMIUM = "/usr/bin/chromium"
FAILOVER_ON_PAGE_S = 2.0
# ISP B by either edge: after start-up flaps, flap damping may put edge2's path first.
ON_ISP_B = re.compile(r"ispB@edge\d")
# Nothing to resolve, no background fetches: the page talks to the controller's address only.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-domain-reliability"]


def contained_chromium(directory: pathlib.Path) -> str:
    """A chromium that starts inside the controller's namespace (Playwright drives it over a pipe)."""
    from topologies import control_ns

    wrapper = directory / "chromium-in-msp-ctl"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {control_ns.NAMESPACE} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def launch(playwright, directory: pathlib.Path):  # type: ignore[no-untyped-def]
    from topologies import control_ns

    no_names = f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {control_ns.OPERATOR_NS_IP}"
    return playwright.chromium.launch(executable_path=contained_chromium(directory), args=[*FLAGS, no_names])


def keep(screenshot: pathlib.Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = ARTIFACTS / screenshot.name
    shutil.copyfile(screenshot, kept)
    print(f"dashboard screenshot: {screenshot} (copy: {kept})")


def test_the_dashboard_shows_the_class_move_to_isp_b_within_2_s(msp, tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from topologies.faults import isp_blackhole
    from topologies.scenario import wait_path

    net, controller = msp
    assert controller.token, "the reference config's operator token (etc/reference-operator.token)"
    wait_path(net, "ispA")
    screenshot = tmp_path / "dashboard.png"
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright, tmp_path)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.goto(f"{controller.url}/dashboard/")
            page.fill("#token", controller.token)
            page.click("#login-form button[type=submit]")
            row = page.locator('tr[data-homenet="home1"]')
            row.wait_for(timeout=10_000)
            assert "ispA@edge1" in row.inner_text()
            page.screenshot(path=str(tmp_path / "dashboard-list.png"))
            keep(tmp_path / "dashboard-list.png")
            row.click()
            egress = page.locator('tr[data-class="default"] td[data-direction="egress"]')
            ingress = page.locator('tr[data-class="default"] td[data-direction="ingress"]')
            sync_api.expect(egress).to_contain_text("ispA@edge1 (up)", timeout=10_000)
            sync_api.expect(ingress).to_contain_text("ispA@edge1 (up)")
            sync_api.expect(page.locator("#live")).to_have_text("live")
            # The graphs draw live samples (a polyline with points in it).
            sync_api.expect(page.locator('#rtt polyline[points*=","]').first).to_be_attached(timeout=10_000)
            try:
                failed_at = time.monotonic()
                isp_blackhole(net["ispA"], True)
                sync_api.expect(egress).to_contain_text(ON_ISP_B, timeout=FAILOVER_ON_PAGE_S * 1000)
                sync_api.expect(ingress).to_contain_text(ON_ISP_B,
                                                         timeout=max(1, (failed_at + FAILOVER_ON_PAGE_S
                                                                         - time.monotonic()) * 1000))
                seen_after = time.monotonic() - failed_at
                print(f"dashboard: default class on ISP B {seen_after * 1000:.0f} ms after ISP A failed")
                assert seen_after <= FAILOVER_ON_PAGE_S
                sync_api.expect(page.locator("#changes li").first).to_contain_text(ON_ISP_B)
                sync_api.expect(page.locator('#picture line[data-path="ispA@edge1"]')).to_have_class(
                    "path down", timeout=5_000)
                # A few more points, so that the graphs show the loss on ISP A.
                sync_api.expect(page.locator("#loss polyline").first).to_have_attribute(
                    "points", re.compile(r"(\S+ ){5}"), timeout=10_000)
            finally:
                page.screenshot(path=str(screenshot), full_page=True)  # kept whatever happened
                isp_blackhole(net["ispA"], False)
        finally:
            browser.close()
            if screenshot.exists():
                keep(screenshot)
    assert screenshot.stat().st_size > 10_000 and os.path.exists(ARTIFACTS / "dashboard.png")
    wait_path(net, "ispA")  # failback, for whatever runs next in this module


def test_an_owner_sees_their_homenet_and_no_other(msp, tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from topologies.scenario import REFERENCE_CONFIG

    net, controller = msp
    owner_token = REFERENCE_CONFIG.with_name("reference-home1.token").read_text().strip()
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright, tmp_path)
        try:
            page = browser.new_page()
            page.goto(f"{controller.url}/dashboard/")
            page.fill("#token", "not a token")
            page.click("#login-form button[type=submit]")
            sync_api.expect(page.locator("#login-error")).to_contain_text("unknown token")
            page.fill("#token", owner_token)
            page.click("#login-form button[type=submit]")
            sync_api.expect(page.locator("#homenet-name")).to_have_text("home1", timeout=10_000)  # straight there
            sync_api.expect(page.locator('tr[data-class="default"]')).to_be_visible()
            # The session cookie is the browser's way in; it does not open another homenet.
            other = page.request.get(f"{controller.url}/dashboard/api/homenets/home2")
            assert other.status == 403
            mine = page.request.get(f"{controller.url}/dashboard/api/homenets/home1")
            assert mine.status == 200 and mine.json()["name"] == "home1"
            page.click("#logout")
            sync_api.expect(page.locator("#login")).to_be_visible()
            assert page.request.get(f"{controller.url}/dashboard/api/me").status == 401
        finally:
            browser.close()
