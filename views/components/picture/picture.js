// A picture to click or drag a box on (see __init__.py). The picture arrives as a media URL, fetched by
// the browser once per picture; the boxes and the ring are drawn here, on top of it, so moving them
// costs the server no new picture. Positions are in the page's pixel units ("shape"), rows down.

const MOVE_FOR_A_DRAG = 4; // screen pixels: a shorter movement is a click

function percent(value, total) {
  return `${(100 * value) / total}%`;
}

function place(element, top, left, height, width, shape) {
  const [rows, cols] = shape;
  element.style.top = percent(top, rows);
  element.style.left = percent(left, cols);
  element.style.height = percent(height, rows);
  element.style.width = percent(width, cols);
}

function drawOverlays(layer, data) {
  layer.replaceChildren();
  for (const box of data.boxes ?? []) {
    const element = document.createElement("div");
    element.className = "box";
    place(element, box.top, box.left, box.height, box.width, data.shape);
    element.style.setProperty("--colour", box.colour);
    if (box.line) element.style.setProperty("--line", `${box.line}px`);
    layer.append(element);
  }
  if (data.ring) {
    // A ring a few screen pixels clear of the pixel it marks, whatever the zoom.
    const element = document.createElement("div");
    element.className = "ring";
    const [rows, cols] = data.shape;
    const gap = "max(7px, 2%)";
    element.style.top = `calc(${percent(data.ring.row, rows)} - ${gap})`;
    element.style.left = `calc(${percent(data.ring.col, cols)} - ${gap})`;
    element.style.height = `calc(${percent(1, rows)} + 2 * ${gap})`;
    element.style.width = `calc(${percent(1, cols)} + 2 * ${gap})`;
    element.style.setProperty("--colour", data.ring.colour);
    layer.append(element);
  }
}

// Where a pointer event lies on the picture, in the page's units, kept on the picture.
function pointOf(frame, event, shape) {
  const bounds = frame.getBoundingClientRect();
  const [rows, cols] = shape;
  const x = Math.min(Math.max((event.clientX - bounds.left) / bounds.width, 0), 1) * cols;
  const y = Math.min(Math.max((event.clientY - bounds.top) / bounds.height, 0), 1) * rows;
  return { x, y, screenX: event.clientX, screenY: event.clientY };
}

// Listeners are installed once per picture and read what the latest call left in `pictures`.
const pictures = new WeakMap(); // root element -> {data, setTriggerValue, cleanup}

function listen(root) {
  const frame = root.querySelector(".frame");
  const dragged = root.querySelector(".dragged");
  let start = null;
  const down = (event) => {
    const { data } = pictures.get(root);
    if (!data.pointing || event.button !== 0) return;
    start = pointOf(frame, event, data.shape);
    frame.setPointerCapture(event.pointerId);
    event.preventDefault();
  };
  const move = (event) => {
    const { data } = pictures.get(root);
    if (!start || !data.drag) return;
    const now = pointOf(frame, event, data.shape);
    if (Math.hypot(now.screenX - start.screenX, now.screenY - start.screenY) < MOVE_FOR_A_DRAG) return;
    place(dragged, Math.min(start.y, now.y), Math.min(start.x, now.x), Math.abs(now.y - start.y),
          Math.abs(now.x - start.x), data.shape);
    dragged.hidden = false;
  };
  const up = (event) => {
    const { data, setTriggerValue } = pictures.get(root);
    if (!start) return;
    const end = pointOf(frame, event, data.shape);
    const [height, width] = data.shape;
    const moved = Math.hypot(end.screenX - start.screenX, end.screenY - start.screenY) >= MOVE_FOR_A_DRAG;
    if (data.drag && moved) {
      setTriggerValue("click", { x1: start.x, y1: start.y, x2: end.x, y2: end.y, width, height });
    } else {
      setTriggerValue("click", { x: end.x, y: end.y, width, height });
    }
    start = null;
  };
  const cancel = () => { start = null; dragged.hidden = true; };
  frame.addEventListener("pointerdown", down);
  frame.addEventListener("pointermove", move);
  frame.addEventListener("pointerup", up);
  frame.addEventListener("pointercancel", cancel);
  return () => {
    frame.removeEventListener("pointerdown", down);
    frame.removeEventListener("pointermove", move);
    frame.removeEventListener("pointerup", up);
    frame.removeEventListener("pointercancel", cancel);
    pictures.delete(root);
  };
}

export default function picture(component) {
  const { parentElement, setTriggerValue } = component;
  const data = JSON.parse(new TextDecoder().decode(component.data)); // JSON in bytes (views/components/__init__.py)
  const root = parentElement.querySelector(".picture");
  const cleanup = pictures.get(root)?.cleanup ?? listen(root);
  pictures.set(root, { data, setTriggerValue, cleanup });
  const frame = root.querySelector(".frame");
  const image = root.querySelector("img");
  const [pixelRows, pixelCols] = data.pixels;
  // The frame keeps the picture's proportions before it has loaded: the page does not jump.
  frame.style.aspectRatio = `${pixelCols} / ${pixelRows}`;
  frame.style.maxWidth = data.width ? `${data.width}px` : "";
  frame.classList.toggle("pointing", Boolean(data.pointing));
  frame.classList.toggle("drag", Boolean(data.pointing && data.drag));
  if (image.getAttribute("src") !== data.src) image.setAttribute("src", data.src);
  image.alt = data.label ?? "";
  root.querySelector(".dragged").hidden = true;
  drawOverlays(root.querySelector(".overlays"), data);
  return cleanup;
}
