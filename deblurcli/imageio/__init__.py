"""Reading and writing photos without losing what the photographer cares about.

A decoded `Image` keeps the file's own samples (uint8/uint16, upright); the model sees them as
float32 HxWx3 in [0, 1] (`Image.pixels`, or one tile at a time via `as_float_rgb`). Everything
else a file carries (bit depth, grey vs colour, alpha, EXIF, ICC, XMP, DPI) rides along on the
`Image` so that `write_image` can put it back.

The package, one concern per module:

* `formats`  - one `ImageFormat` description per file format; the only place to add a format.
* `decode`   - `read_image`: file or bytes to `Image`, every failure as one `ImageError` line.
* `encode`   - `write_image` / `encode_image`: the write plan, quantizing, atomic writes;
               `save_png`, the plain PNG of samples that training and evaluation write.
* `writers`  - one encoder per format (16-bit PNG and TIFF are written by our own code).
* `metadata` - the EXIF/TIFF directory codec, ICC and XMP handling.
* `image`    - the `Image` record and EXIF orientation turns.
"""

from ..fsutil import same_file
from .decode import DEFAULT_MAX_PIXELS, read_image, unreadable_file
from .encode import encode_image, output_layout, output_notes, save_png, to_samples, write_image
from .formats import (
    FORMAT_EXTENSIONS,
    FORMATS,
    IMAGE_EXTENSIONS,
    ImageFormat,
    extension_for,
    extension_hint,
    format_for_path,
    unknown_format_error,
)
from .image import Image, _orient, _unorient, as_float_rgb, sample_max  # noqa: F401  (_orient: used by tests)
from .metadata import _exif_tags  # noqa: F401  (used by tests)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "FORMAT_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "Image",
    "as_float_rgb",
    "sample_max",
    "ImageFormat",
    "encode_image",
    "extension_for",
    "extension_hint",
    "format_for_path",
    "output_layout",
    "output_notes",
    "read_image",
    "same_file",
    "save_png",
    "to_samples",
    "unknown_format_error",
    "write_image",
    "unreadable_file",
]
