"""sensor_msgs/Image and CompressedImage <-> numpy: one-line adapters over mim_perception.core.imageconv.

Received ``msg.data`` is an ``array.array('B')``; decoded arrays are zero-copy views of it where possible,
so they stay valid as long as the message is referenced and writing into them writes into the message.
"""

from __future__ import annotations

import array
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from mim_perception.core import imageconv


def image_to_numpy(msg: Image) -> np.ndarray:
    """Image → native-layout array (zero-copy view unless byte-swapped); see imageconv.decode_raw."""
    return imageconv.decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)


def image_to_bgr8(msg: Image) -> np.ndarray:
    """Image → contiguous H×W×3 uint8 BGR (a view for unpadded bgr8)."""
    return imageconv.to_bgr8(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)


# With field checking on, the generated setter stores an array.array('B') as is; with it off it copies it
# again (array.array('B', value)), and bytes would even be validated element by element when checked.
# Building messages checked and assigning a fresh array.array: 640×384×3 in ~0.04 ms instead of ~0.8 ms.
# Older distros' generated messages have no check_fields argument: fall back to the default there.
_CHECKED: Final[Mapping[str, bool]] = MappingProxyType(
    {"check_fields": True} if "_check_fields" in getattr(Image, "__slots__", ()) else {})


def _byte_array(buf: bytes | memoryview) -> array.array:
    out = array.array("B")
    out.frombytes(buf)  # one copy
    return out


def numpy_to_image(array_: np.ndarray, encoding: str, header: Header | None = None, frame_id: str = "") -> Image:
    """Native-layout array → Image (little-endian, unpadded). ``frame_id`` is used only when ``header`` is None."""
    height, width, step, buf = imageconv.encode_raw_array(array_, encoding)
    msg = Image(**_CHECKED, header=header if header is not None else Header(frame_id=frame_id),
                height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
    msg.data = _byte_array(buf.data.cast("B"))  # buf is C-contiguous
    return msg


def compressed_to_bgr8(msg: CompressedImage) -> np.ndarray:
    """CompressedImage (jpeg/png, image_transport format strings) → H×W×3 uint8 BGR."""
    return imageconv.decode_compressed(msg.format, msg.data)


def bgr8_to_compressed(array_: np.ndarray, header: Header | None = None, fmt: str = "jpeg",
                       quality: int = 90) -> CompressedImage:
    """H×W×3 BGR (or H×W mono) uint8 → CompressedImage with image_transport's format string."""
    codec, _ = imageconv.parse_compressed_format(fmt)
    msg = CompressedImage(**_CHECKED, header=header if header is not None else Header(),
                          format=imageconv.compressed_format(codec, mono=array_.ndim == 2))
    msg.data = _byte_array(imageconv.encode_compressed(array_, codec, quality))
    return msg
