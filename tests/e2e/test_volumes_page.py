"""The volumes lesson in a real browser: a multi-frame DICOM is uploaded and a 3-D kernel steps through it.

The numbers the volume player shows are checked against a 3-D trace computed here with kernels/ on the
region the page shows (the uploaded volume, the picker's window, the default kernel and region). The
steps happen in the browser: no message goes to the server while stepping.
"""

import re
from pathlib import Path

import numpy as np
from playwright.sync_api import expect

from kernels import conv3d_trace
from lessons import volumes
from scans import apply_window, read
from tests.e2e.browser import assert_no_exception, cut_texts, save_screenshot, students_link, wait_for_app
from views.components.step_player import conv_payload
from views.scan_picker import _window_options
from views.volumes_lesson import DEFAULTS

MULTI_FRAME = Path(__file__).resolve().parents[2] / "sample_images" / "mr_head_volume.dcm"
PLAYER = ".step-player[data-kind='conv3d']"

READ_STEP = """(root) => {
  const texts = (selector) => [...root.querySelectorAll(selector)].map((cell) => cell.textContent);
  const text = (selector) => root.querySelector(selector)?.textContent ?? null;
  const output = [...root.querySelectorAll('.output-slice .cell')];
  return {
    step: Number(text('.step-number')), count: Number(text('.step-count')),
    sum: text('.equation .sum'), value: text('.equation .value'), target: text('.equation .target'),
    sliceSums: texts('.slice-sum'), under: texts('.slice.under figcaption'),
    products: [...root.querySelectorAll('.slice-work')].map((block) =>
      [...block.querySelectorAll('.work-grid')][2].textContent === '' ? [] :
      [...[...block.querySelectorAll('.work-grid')][2].querySelectorAll('.cell')].map((cell) => cell.textContent)),
    filled: output.filter((cell) => !cell.classList.contains('pending')).length,
    current: output.findIndex((cell) => cell.classList.contains('current')),
  };
}"""


def _shown(value, decimals):
    text = f"{float(np.float32(value)):.{decimals}f}"
    return text[1:] if re.fullmatch(r"-0(\.0*)?", text) else text


def _expected_trace(upload_bytes):
    """The page's default 3-D convolution on the uploaded volume, computed here."""
    scan = read(upload_bytes, name="head.dcm")
    level, width = _window_options(scan)[0][1]
    volume, _ = volumes.working_volume(apply_window(scan.pixels, level, width))
    voxel = (volume.shape[0] // 2, *volumes.blob_in_slice(volume, volume.shape[0] // 2))
    bounds = volumes.region_bounds(volume.shape, voxel, DEFAULTS["vol3d_region_depth"], DEFAULTS["vol3d_region_side"])
    region = volume[tuple(slice(start, stop) for start, stop in bounds)]
    kernel = volumes.bank_kernel(DEFAULTS["vol3d_kernel_name"], DEFAULTS["vol3d_kernel_depth"],
                                 DEFAULTS["vol3d_kernel_size"])
    return conv3d_trace(region, kernel, 0.0, padding=DEFAULTS["vol3d_padding"])


def _assert_shows_step(shown, trace):
    steps = trace.all_steps()
    index = shown["step"] - 1
    payload = conv_payload(trace, titles={}, memory="test")
    equation = payload["equation_decimals"]
    assert shown["count"] == trace.num_steps
    assert shown["sum"] == _shown(steps.totals[index], equation)
    assert shown["value"] == _shown(steps.values[index], equation)
    assert shown["sliceSums"] == [_shown(total, equation) for total in steps.slice_sums[index]]
    product_decimals = payload["products"]["decimals"]
    assert shown["products"] == [[_shown(product, product_decimals) for product in plane.ravel()]
                                 for plane in steps.products[index]]
    assert len(shown["under"]) == trace.kernel.shape[0]
    out_slice, out_row, out_col = np.unravel_index(index, trace.output.shape)
    assert shown["target"].endswith(f"goes to output slice {out_slice + 1}, row {out_row + 1}, column {out_col + 1}")
    assert shown["current"] == index and shown["filled"] == index + 1


def test_upload_a_multi_frame_dicom_and_step_a_3d_kernel(page):
    frames_sent = []
    page.on("websocket", lambda socket: socket.on("framesent", lambda payload: frames_sent.append(payload)))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto("/volumes")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Volumes and video: kernels with depth")).to_be_visible()
    assert_no_exception(page)

    upload = MULTI_FRAME.read_bytes()
    page.locator("[data-testid='stSidebar'] [data-testid='stFileUploaderDropzoneInput']").set_input_files(
        [{"name": "head.dcm", "mimeType": "application/dicom", "buffer": upload}])
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"^Working volume: 10 x 64 x 64 voxels"))).to_be_visible()
    assert_no_exception(page)
    save_screenshot(page, "volumes_planes")

    page.get_by_role("tab", name=re.compile(r"^2\. A 3-D kernel")).click()
    wait_for_app(page)
    assert_no_exception(page)
    player = page.locator(PLAYER)
    trace = _expected_trace(upload)
    expect(player.locator(".status")).to_have_text(f"Step 1 of {trace.num_steps}")
    _assert_shows_step(player.evaluate(READ_STEP), trace)

    sent_before = len(frames_sent)
    for expected in range(2, 6):
        player.get_by_role("button", name="Next").click()
        expect(player.locator(".step-number")).to_have_text(str(expected))
    _assert_shows_step(player.evaluate(READ_STEP), trace)
    # Past the first output slice: the kernel has moved one slice deeper.
    per_slice = trace.output.shape[1] * trace.output.shape[2]
    player.locator(".scrubber").evaluate(
        f"(range) => {{ range.value = '{per_slice + 3}'; range.dispatchEvent(new Event('input', {{bubbles: true}})); }}")
    expect(player.locator(".step-number")).to_have_text(str(per_slice + 3))
    shown = player.evaluate(READ_STEP)
    _assert_shows_step(shown, trace)
    player.locator(".status").click()
    page.keyboard.press("ArrowRight")
    expect(player.locator(".step-number")).to_have_text(str(per_slice + 4))
    page.wait_for_timeout(300)
    assert len(frames_sent) == sent_before, "stepping must not talk to the server"
    player.evaluate("(root) => root.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    save_screenshot(page, "volumes_player", full_page=False)
    save_screenshot(page, "volumes_kernel_section")
    assert_no_exception(page)


def test_every_section_on_the_shipped_chest_ct(page):
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto("/volumes")
    wait_for_app(page)
    chosen = page.get_by_text(re.compile(r"^Working volume: 48 x 128 x 128 voxels"))
    expect(chosen).to_contain_text("Chosen voxel: slice 25, row 95, column 43")
    # A click on the coronal plane (the middle picture) moves the voxel's slice and column.
    planes = page.locator(".st-key-vol3d_planes_click .picture img")
    box = planes.bounding_box()
    planes.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.3})
    expect(chosen).not_to_contain_text("slice 25, row 95, column 43", timeout=30_000)
    wait_for_app(page)
    expect(chosen).to_contain_text("row 95,")  # the coronal plane keeps the row
    assert_no_exception(page)
    save_screenshot(page, "volumes_1_planes")

    # The player at a laptop's width: every slice, grid and sum inside the player's box, no text cut.
    page.get_by_role("tab", name=re.compile(r"^2\. A 3-D kernel")).click()
    wait_for_app(page)
    player = page.locator(PLAYER)
    expect(player.locator(".status")).to_have_text("Step 1 of 144")  # 4 x 6 x 6 region, padding "same"
    overflow = player.evaluate("""(root) => {
      const right = root.getBoundingClientRect().right + 1;
      return [...root.querySelectorAll('.slice, .slice-work-row > *, .equation')]
        .filter((element) => element.getBoundingClientRect().right > right)
        .map((element) => element.className + ': ' + element.textContent.slice(0, 30));
    }""")
    assert not overflow, overflow
    assert not cut_texts(page), cut_texts(page)
    player.evaluate("(root) => root.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    save_screenshot(page, "volumes_2_player_1280x720", full_page=False)
    # "Link this step" puts the step shown into the students' link.
    for _ in range(2):
        player.get_by_role("button", name="Next").click()
    player.get_by_role("button", name="Link this step").click()
    wait_for_app(page)
    page.wait_for_function("() => new URLSearchParams(location.search).get('step') === '3'", timeout=30_000)
    assert "step=3" in students_link(page)
    for number, name in (("3.", "why_3d"), ("4.", "pooling"), ("5.", "video")):
        page.get_by_role("tab", name=re.compile(rf"^{re.escape(number)}")).click()
        wait_for_app(page)
        assert_no_exception(page)
        page.wait_for_timeout(500)
        save_screenshot(page, f"volumes_{number[0]}_{name}")
        if name == "pooling":
            expect(page.get_by_text("multiply-adds").first).to_be_visible()


def test_the_volume_player_in_presenter_view(page):
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto("/volumes?present=1&section=kernel")
    wait_for_app(page)
    assert_no_exception(page)
    player = page.locator(PLAYER)
    expect(player.locator(".status")).to_have_text("Step 1 of 144")
    player.get_by_role("button", name="Next").click()
    expect(player.locator(".step-number")).to_have_text("2")
    sizes = player.evaluate("""(root) => {
      const right = root.getBoundingClientRect().right + 1;
      const font = (selector) => parseFloat(getComputedStyle(root.querySelector(selector)).fontSize);
      return {input: font('.slice-grid .cell'), work: font('.work-grid .cell'),
              outside: [...root.querySelectorAll('.slice, .slice-work-row > *')]
                .filter((element) => element.getBoundingClientRect().right > right).length};
    }""")
    print(f"\npresenting at 1920 x 1080: font sizes (px) {sizes}")
    assert sizes["outside"] == 0, sizes
    assert sizes["input"] >= 14 and sizes["work"] >= 20, sizes  # from the back of a room
    player.evaluate("(root) => root.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    save_screenshot(page, "volumes_player_presenting_1920x1080", full_page=False)
