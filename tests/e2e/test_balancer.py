"""Two replicas behind HAProxy (python -m deploy.local): each student's upload, reruns and images stay on one replica.

Streamlit keeps a session, its upload and the images it serves in one process's memory: a request that
reaches another replica fails (an upload with 400, an image with 404). The balancer's cookie is what
keeps a browser on its replica; HAProxy names the replica that answered in X-ConvScope-Replica.
"""

import os
import random
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from deploy.local import HAPROXY_MISSING, LocalCluster, haproxy_path, port_is_free, replica_cores
from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app

REPLICAS = 2
RERUNS = 20
SAMPLE_SCAN = Path(__file__).resolve().parents[2] / "sample_images" / "fundus_retina.png"
COOKIE = "CONVSCOPE_REPLICA"
REPLICA_HEADER = "x-convscope-replica"


def _free_port_run(count):
    """A port such that it and the ``count - 1`` after it are free on 127.0.0.1."""
    for _ in range(200):
        first = random.randrange(20_000, 40_000)
        if all(port_is_free(first + offset) for offset in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


@pytest.fixture(scope="module")
def balancer(chromium_executable, tmp_path_factory):
    if haproxy_path() is None:
        message = f"The load-balancer test needs HAProxy. {HAPROXY_MISSING}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port_run(REPLICAS + 1)
    with LocalCluster(REPLICAS, port, address="127.0.0.1", log_dir=tmp_path_factory.mktemp("deploy-local")) as cluster:
        yield cluster


def _base_path_probe(url):
    # Opened at /input, Streamlit's frontend first asks whether the server lives under /input/
    # (/input/_stcore/health, /input/_stcore/host-config: 404 from any server), then tries the root.
    path = urlsplit(url).path
    return path.endswith(("/_stcore/health", "/_stcore/host-config")) and not path.startswith("/_stcore/")


class Student:
    """One browser (its own cookies) on the balancer, with every HTTP response it received."""

    def __init__(self, browser, balancer):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=balancer.url)
        self.page = self.context.new_page()
        self.page.set_default_timeout(120_000)
        self.responses = []  # (method, url, status, replica that answered)
        self.page.on("response", lambda response: self.responses.append(
            (response.request.method, response.url, response.status, response.headers.get(REPLICA_HEADER))))

    def replica(self):
        """The replica the balancer's cookie names."""
        values = [cookie["value"] for cookie in self.context.cookies() if cookie["name"] == COOKIE]
        assert len(values) == 1, f"the balancer set no {COOKIE} cookie: {self.context.cookies()}"
        return values[0]

    def upload_and_rerun(self, reruns):
        page = self.page
        page.goto("/input")
        wait_for_app(page)
        page.locator("[data-testid='stSidebar'] [data-testid='stFileUploaderDropzoneInput']").set_input_files(
            str(SAMPLE_SCAN))
        wait_for_app(page)
        self.assert_nothing_failed()
        expect(page.locator("[data-testid='stMain']").get_by_text("fundus_retina.png: window").first).to_be_visible()
        # Each step of the window level is a rerun that draws the uploaded scan anew: new images to fetch.
        level = page.locator("[data-testid='stSidebar'] [data-testid='stSlider']").filter(has_text="Window level")
        shown = level.get_by_test_id("stSliderThumbValue")
        thumb = level.get_by_role("slider")
        for _ in range(reruns):
            before = shown.inner_text()
            thumb.focus()
            thumb.press("ArrowRight")
            expect(shown).not_to_have_text(before)
            wait_for_app(page)
        assert_no_exception(page)
        assert page.locator("[data-testid='stAlertContentError']").count() == 0, \
            page.locator("[data-testid='stAlertContentError']").first.inner_text()

    def assert_nothing_failed(self):
        failed = [response for response in self.responses if response[2] >= 400 and not _base_path_probe(response[1])]
        assert not failed, f"failed requests (method, URL, status, replica): {failed[:5]}"

    def check_served_by_one_replica(self):
        """Every response came from the replica the cookie names, none failed; returns the media fetched."""
        self.assert_nothing_failed()
        replica = self.replica()
        elsewhere = [response for response in self.responses if response[3] != replica]
        assert not elsewhere, f"the session is on {replica}, these were answered elsewhere: {elsewhere[:5]}"
        uploads = [response for response in self.responses if "/_stcore/upload_file/" in response[1]]
        assert uploads, "the upload went through no request (has Streamlit's upload URL changed?)"
        return [response for response in self.responses if "/media/" in response[1]]


def test_upload_and_reruns_stay_on_the_replica_that_holds_the_session(browser, balancer):
    first = Student(browser, balancer)
    try:
        first.upload_and_rerun(RERUNS)
        media = first.check_served_by_one_replica()
        # The scan drawn at each new window level, fetched from the replica that holds the upload.
        assert len(media) >= RERUNS, media
        save_screenshot(first.page, "balancer_upload_and_reruns", full_page=False)

        # A second student arriving while the first is connected goes to the other replica (the one with
        # fewer open connections) and stays there.
        second = Student(browser, balancer)
        try:
            second.upload_and_rerun(3)
            second.check_served_by_one_replica()
            assert {first.replica(), second.replica()} == {"replica1", "replica2"}
        finally:
            second.context.close()
    finally:
        first.context.close()


def test_each_replica_runs_on_cores_of_its_own(balancer):
    """With a core per replica, every thread of a replica stays on its own cores (deploy.local.replica_cores)."""
    shares = replica_cores(REPLICAS)
    for number, share in enumerate(shares, start=1):
        pid = balancer.processes[f"replica{number}"].pid
        threads = {int(task.name): os.sched_getaffinity(int(task.name)) for task in Path(f"/proc/{pid}/task").iterdir()}
        assert len(threads) > 1, "a running server has threads"
        if share is None:  # fewer cores than replicas: not pinned
            assert all(cores == os.sched_getaffinity(0) for cores in threads.values())
        else:
            assert all(cores == share for cores in threads.values()), threads
    if shares[0] is not None:
        assert len(set().union(*shares)) == sum(map(len, shares)), "no core is shared"
