"""A NumPy reference of the panorama -> BEV projection, written directly from paper Eq. 2.

Conventions (the ones ``ucvgl.services.projection.geometry`` documents): BEV pixel (i, j)
is sampled at its centre (u_s = j + 0.5, v_s = i + 0.5); panorama pixel k covers [k, k+1),
so a continuous coordinate u maps to the index u - 0.5; columns wrap around (360 degrees),
rows are clamped to the image (border). Bilinear interpolation is written out by hand.
"""

from __future__ import annotations

import math

import numpy as np


def bilinear_wrap(image: np.ndarray, u: float, v: float) -> np.ndarray:
    """Sample ``image`` [H, W, C] at continuous (u, v): columns wrap, rows clamp."""
    h, w = image.shape[:2]
    x = u - 0.5
    y = min(max(v - 0.5, 0.0), h - 1.0)
    x0, y0 = math.floor(x), math.floor(y)
    ax, ay = x - x0, y - y0
    y1 = min(y0 + 1, h - 1)
    c0, c1 = x0 % w, (x0 + 1) % w
    top = (1 - ax) * image[y0, c0] + ax * image[y0, c1]
    bottom = (1 - ax) * image[y1, c0] + ax * image[y1, c1]
    return (1 - ay) * top + ay * bottom


def reference_bev(canvas: np.ndarray, fov_deg: float, size: int) -> np.ndarray:
    """Eq. 2 on a full (2:1 canvas) panorama ``canvas`` [H_g, W_g, C] -> BEV [S, S, C].

    A per-pixel loop: for BEV pixel (u_s, v_s), d = |(S/2 - u_s, S/2 - v_s)|,
    f = (S/2)/tan(FOV/2), u_g = W_g/2 (1 - atan2(S/2 - u_s, S/2 - v_s)/pi),
    v_g = H_g (0.5 - atan2(-f, d)/pi).
    """
    h_g, w_g = canvas.shape[:2]
    f = (size / 2) / math.tan(math.radians(fov_deg) / 2)
    out = np.zeros((size, size, canvas.shape[2]), dtype=np.float64)
    for i in range(size):
        for j in range(size):
            u_s, v_s = j + 0.5, i + 0.5
            d = math.sqrt((size / 2 - u_s) ** 2 + (size / 2 - v_s) ** 2)
            u_g = w_g / 2 * (1 - math.atan2(size / 2 - u_s, size / 2 - v_s) / math.pi)
            v_g = h_g * (0.5 - math.atan2(-f, d) / math.pi)
            out[i, j] = bilinear_wrap(canvas, u_g, v_g)
    return out


def band_canvas(strip: np.ndarray, top_row: int, fill: str = "zeros") -> np.ndarray:
    """Place a band panorama [h, W, C] on a 2:1 canvas [W/2, W, C] starting at ``top_row``.

    ``fill='zeros'`` leaves the other rows black (the authors' padded canvas); 'edge'
    repeats the strip's first/last row.
    """
    h, w, c = strip.shape
    canvas_h = w // 2
    canvas = np.zeros((canvas_h, w, c), dtype=np.float64)
    canvas[top_row : top_row + h] = strip
    if fill == "edge":
        canvas[:top_row] = strip[0]
        canvas[top_row + h :] = strip[-1]
    return canvas
