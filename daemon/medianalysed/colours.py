"""The `colors` section: dominant colours and the average, from the reduced decode."""

from __future__ import annotations

from typing import Any, Final

from PIL import Image

COLOR_SIDE: Final = 32  # colours come from a box-reduced copy about this big on the short side

_WHITE: Final = (255, 255, 255)


def colors_section(reduced: Image.Image, dominant: int) -> dict[str, Any]:
    """Dominant colours (octree quantisation) and the average, alpha flattened onto white."""
    factor = max(1, min(reduced.size) // COLOR_SIDE)
    small = _flattened_rgb(reduced.reduce(factor) if factor > 1 else reduced)
    mean = small.reduce((small.width, small.height)).getpixel((0, 0))  # one box: the mean
    average = _hex_color(mean if isinstance(mean, tuple) else (0, 0, 0))
    return {"dominant": _dominant_colors(small, dominant), "average": average}


def _flattened_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, _WHITE)
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _dominant_colors(small: Image.Image, count: int) -> list[dict[str, Any]]:
    if count <= 0:
        return []
    quantised = small.quantize(colors=count, method=Image.Quantize.FASTOCTREE)
    palette = quantised.getpalette() or []
    totals: dict[str, int] = {}
    for pixels, index in quantised.getcolors() or []:
        start = int(index) * 3  # type: ignore[arg-type]  # a "P" image's colours are indices
        key = _hex_color(tuple(palette[start : start + 3]))
        totals[key] = totals.get(key, 0) + pixels
    area = small.width * small.height
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:count]
    return [{"hex": key, "ratio": round(pixels / area, 4)} for key, pixels in ranked]


def _hex_color(rgb: tuple[int, ...]) -> str:
    red, green, blue = rgb
    return f"#{red:02x}{green:02x}{blue:02x}"
