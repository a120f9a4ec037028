"""Small previews of a series: the middle image, rendered from its pixel data and kept in a cache.

Rendering decodes one frame only (pydicom's codecs, pylibjpeg for compressed syntaxes), applies
the modality LUT and the image's own window (PS3.3 C.11.2.1.2), and scales it down with Pillow.
The PNG is kept under ``CACHE_DIR/thumbnails`` by instance id and CRC-32, so it is rendered once,
and a new middle instance or a replaced file gives a new name. An image that cannot be rendered
is remembered too, so a broken file is not decoded again on every page view.
"""

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from studies import storage
from studies.models import Instance, Series
from studies.selectors import series_middle_instance

log = logging.getLogger(__name__)

SIZE = 192
# Frames bigger than this (a whole-slide image, a forged header) are not worth decoding.
MAX_PIXELS = 8192 * 8192
# What a page shows when there is no image to show (no pixel data, an unsupported codec).
PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="192" height="192" viewBox="0 0 192 192">'
    '<rect width="192" height="192" rx="10" fill="#e6ebf1"/>'
    '<g fill="none" stroke="#8a98a8" stroke-width="6" stroke-linejoin="round">'
    '<rect x="46" y="56" width="100" height="80" rx="6"/>'
    '<path d="M52 128l30-32 22 22 14-14 24 24"/></g>'
    '<circle cx="122" cy="80" r="9" fill="#8a98a8"/>'
    '<text x="96" y="166" font-family="sans-serif" font-size="15" fill="#5d6b7a" '
    'text-anchor="middle">No preview</text></svg>'
)


class CannotRender(Exception):
    """The image cannot be turned into a thumbnail; the message says why (for the log)."""


def cache_folder() -> Path:
    return Path(settings.CACHE_DIR) / "thumbnails"


def series_thumbnail(series: Series) -> Path | None:
    """The cached PNG of the series' middle image, rendered now if needed; None if there is none."""
    instance = series_middle_instance(series)
    if instance is None:
        return None
    return instance_thumbnail(instance)


def instance_thumbnail(instance: Instance) -> Path | None:
    folder = cache_folder()
    stem = f"{instance.pk}-{instance.crc32:08x}"
    png, failed = folder / f"{stem}.png", folder / f"{stem}.failed"
    if png.exists():
        return png
    if failed.exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        image = render(storage.absolute(instance.path), frame=max(instance.num_frames, 1) // 2)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "no preview", never a 500.
        log.info("no thumbnail for instance %s: %s", instance.pk, exc)
        failed.touch()
        return None
    _write_atomically(png, image)
    return png


def _write_atomically(path: Path, image: Image.Image) -> None:
    # Concurrent requests for the same thumbnail each write a temporary file and rename it, so
    # nobody ever reads half a PNG.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fp:
            image.save(fp, format="PNG", optimize=True)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def render(path: Path, *, frame: int = 0) -> Image.Image:
    """A thumbnail (at most SIZE x SIZE) of one frame of the DICOM file at ``path``."""
    header = dcmread(path, stop_before_pixels=True)
    rows, columns = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    if rows * columns == 0:
        raise CannotRender("no image (Rows or Columns missing)")
    if rows * columns > MAX_PIXELS:
        raise CannotRender(f"frame too big ({columns} x {rows})")
    frames = int(header.get("NumberOfFrames") or 1)
    ds = Dataset()
    array = pixel_array(path, ds_out=ds, index=min(frame, frames - 1))
    image = _to_8_bit(array, ds)
    image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
    return image


def _to_8_bit(array: np.ndarray, ds: Dataset) -> Image.Image:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
    if array.ndim == 3:
        # Colour: pydicom has already converted YBR to RGB; only the bit depth is left to scale.
        if array.dtype != np.uint8:
            # Palette entries are 16-bit (PS3.3 C.7.6.3.1.6); other colour has BitsStored bits.
            bits = 16 if photometric == "PALETTE COLOR" else int(ds.get("BitsStored") or 16)
            scale = 255.0 / (2**bits - 1)
            array = np.clip(array.astype(np.float64) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(array[..., :3]))
    values = apply_modality_lut(array, ds).astype(np.float64)
    low, high = _window(values, ds)
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0) * 255.0
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return Image.fromarray(scaled.astype(np.uint8))


def _first(value: object) -> float:
    """The first of a multi-valued DS (several windows may be given; the first is the default)."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0]
    return float(value)


def _window(values: np.ndarray, ds: Dataset) -> tuple[float, float]:
    """The value range to show: the image's VOI LUT or first window, else most of its values."""
    if "VOILUTSequence" in ds:
        shown = apply_voi_lut(values, ds)
        return float(shown.min()), float(shown.max())
    try:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        if width >= 1:
            return center - width / 2, center + width / 2
    except (AttributeError, TypeError, ValueError, IndexError):
        pass
    # No usable window: skip the extreme 0.5 % at either end (padding, metal, air).
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        low, high = values.min(), values.max()
    return float(low), float(high)
