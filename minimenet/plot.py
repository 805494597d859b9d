"""Pictures with Pillow alone: line charts (loss curves, precision-recall) and map grids; and
``atomic_write``, with which every output file of minimenet is written."""
import json
import os
import secrets
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe qualitative palette (Okabe and Ito).
COLOURS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167),
           (230, 159, 0), (86, 180, 233), (0, 0, 0), (240, 228, 66)]


def temporary_path(path):
    """A fresh name beside ``path`` for writing it atomically: NAME.<pid>-<random>.tmp."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def atomic_write(path, write, sync=False):
    """Write ``path`` through ``write(binary handle)`` into a temporary file beside it, then rename
    it into place: a failed or interrupted write (a full disk, a kill) never leaves a half-written
    ``path``, and any older ``path`` stays as it was. The temporary file is removed on failure.
    ``sync`` also flushes it to the disk before the rename (for checkpoints). The file gets the
    usual permissions (0666 less the umask)."""
    path = Path(path)
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_png(image, path):
    """A PIL image or a uint8 array as a PNG, written atomically."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    atomic_write(path, lambda handle: image.save(handle, format="PNG"))


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed-size bitmap font
        return ImageFont.load_default()


def _ticks(lo, hi, count=6):
    return np.linspace(lo, hi, count)


def line_chart(series, path, title, x_label, y_label, x_range=None, y_range=None, size=(640, 520), legend="lower left"):
    """Write a PNG of one line per entry of ``series`` (legend name -> (x, y) arrays)."""
    # Drawn at twice the size and downsampled: Pillow's lines are not anti-aliased otherwise.
    scale = 2
    width, height = size[0] * scale, size[1] * scale
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    label_font, title_font = _font(13 * scale), _font(16 * scale)
    left, right, top, bottom = 80 * scale, width - 20 * scale, 40 * scale, height - 60 * scale

    arrays = {name: (np.asarray(x, np.float64), np.asarray(y, np.float64)) for name, (x, y) in series.items()}
    for name, (x, y) in arrays.items():
        if x.shape != y.shape:
            raise ValueError(f"line_chart: series {name!r} has x of shape {x.shape} but y of shape {y.shape}")
    finite_x = np.concatenate([x[np.isfinite(x)] for x, _ in arrays.values()] or [np.zeros(1)])
    finite_y = np.concatenate([y[np.isfinite(y)] for _, y in arrays.values()] or [np.zeros(1)])
    x_lo, x_hi = x_range or (finite_x.min(), finite_x.max())
    y_lo, y_hi = y_range or (finite_y.min(), finite_y.max())
    x_hi, y_hi = (x_hi if x_hi > x_lo else x_lo + 1), (y_hi if y_hi > y_lo else y_lo + 1)

    def to_pixel(x, y):
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo) * (bottom - top))

    for x_tick, y_tick in zip(_ticks(x_lo, x_hi), _ticks(y_lo, y_hi)):
        x, _ = to_pixel(x_tick, y_lo)
        _, y = to_pixel(x_lo, y_tick)
        draw.line([(x, top), (x, bottom)], fill=(225, 225, 225), width=scale)
        draw.line([(left, y), (right, y)], fill=(225, 225, 225), width=scale)
        draw.text((x, bottom + 8 * scale), f"{x_tick:.3g}", fill="black", font=label_font, anchor="mt")
        draw.text((left - 8 * scale, y), f"{y_tick:.3g}", fill="black", font=label_font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="black", width=scale)
    draw.text(((left + right) / 2, height - 12 * scale), x_label, fill="black", font=label_font, anchor="md")
    draw.text(((left + right) / 2, top / 2), title, fill="black", font=title_font, anchor="mm")
    # Pillow cannot draw rotated text directly: render the axis label on its own strip and rotate it.
    strip = Image.new("RGB", (bottom - top, 20 * scale), "white")
    ImageDraw.Draw(strip).text((strip.width / 2, strip.height / 2), y_label, fill="black", font=label_font, anchor="mm")
    canvas.paste(strip.rotate(90, expand=True), (6 * scale, top))

    colours = [COLOURS[i % len(COLOURS)] for i in range(len(arrays))]
    for colour, (x, y) in zip(colours, arrays.values()):
        keep = np.isfinite(x) & np.isfinite(y)
        points = [to_pixel(a, b) for a, b in zip(x[keep], y[keep])]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2 * scale, joint="curve")

    row_height = 20 * scale
    legend_width = 56 * scale + max((draw.textlength(name, font=label_font) for name in arrays), default=0)
    legend_top = (bottom - 10 * scale - len(arrays) * row_height) if legend == "lower left" else top + 10 * scale
    if legend == "upper right":
        box_left = right - legend_width - 6 * scale
    else:
        box_left = left + 6 * scale
    draw.rectangle([box_left, legend_top - 6 * scale, box_left + legend_width - 6 * scale,
                    legend_top + len(arrays) * row_height + 4 * scale], fill="white", outline=(160, 160, 160), width=scale)
    for row, (colour, name) in enumerate(zip(colours, arrays)):
        entry_y = legend_top + (row + 0.5) * row_height
        draw.line([(box_left + 8 * scale, entry_y), (box_left + 32 * scale, entry_y)], fill=colour, width=3 * scale)
        draw.text((box_left + 40 * scale, entry_y), name, fill="black", font=label_font, anchor="lm")
    save_png(canvas.resize(size, Image.LANCZOS), path)


def plot_pr_curve(curves, path, title="Precision-recall"):
    """Precision-recall curves ({name: (precision, recall)}, e.g. ``SaliencyMetrics.results()``'s) as a PNG."""
    series = {name: (recall, precision) for name, (precision, recall) in curves.items()}
    line_chart(series, path, title, "Recall", "Precision", x_range=(0, 1), y_range=(0, 1))


def plot_training_log(log_path, path):
    """The loss terms of a run's log.jsonl against iterations, as a PNG."""
    records = []
    for line in Path(log_path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a blank line, or one cut short by a kill
            pass
    steps = [r for r in records if "loss" in r]
    if not steps:
        return
    names = [k for k in ("loss", "metric", "ce") if k in steps[0]]
    series = {name: ([r["iteration"] for r in steps], [r[name] for r in steps]) for name in names}
    line_chart(series, path, "Training loss", "iteration", "loss", legend="upper right")


def prediction_grid(rows, path, cell=128):
    """A PNG with one row per example: image | ground truth | one column per map.

    rows: list of (image uint8 (H, W, 3), mask bool (h, w), {name: map (S, S) in [0, 1]}).
    """
    if not rows:
        raise ValueError("prediction_grid: no examples to draw")
    names = list(rows[0][2])
    headers = ["image", "ground truth"] + [f"{n.replace('ce', 'CE')} map" for n in names]
    font = _font(14)
    header = 22
    grid = Image.new("RGB", (cell * len(headers), header + cell * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for column, text in enumerate(headers):
        draw.text((column * cell + cell / 2, header / 2), text, fill="black", font=font, anchor="mm")
    for row, (image, mask, maps) in enumerate(rows):
        tiles = [Image.fromarray(image), Image.fromarray(np.asarray(mask, np.uint8) * 255)]
        tiles += [Image.fromarray(np.rint(np.clip(maps[n], 0, 1) * 255).astype(np.uint8)) for n in names]
        for column, tile in enumerate(tiles):
            grid.paste(tile.convert("RGB").resize((cell, cell), Image.BILINEAR), (column * cell, header + row * cell))
    save_png(grid, path)
