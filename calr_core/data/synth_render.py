"""Drawing for the synthetic camera world: identities, cameras and the pedestrians themselves.

Everything is vectorised numpy on a float (H, W, 3) canvas in [0, 1]. Shapes are signed-distance
functions evaluated only inside their bounding box and painted with a one-pixel soft edge, which
keeps a 128 x 64 person at well under a millisecond of drawing. An identity is what stays fixed
across cameras (clothes, body, hair, bag); a camera is what CALR must learn to ignore (colour
cast, exposure, blur, noise, background, dominant viewpoint).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VIEWS = ("front", "back", "left", "right")
# Clothing colours (RGB 0-255): a small palette shared by many people, like real street clothes,
# so identity lives in the combination of attributes, not in one unique colour.
CLOTHES = np.array([
    [25, 25, 30], [235, 235, 230], [120, 120, 125], [30, 45, 110], [90, 140, 200], [170, 30, 35],
    [40, 110, 55], [230, 200, 60], [120, 75, 40], [200, 110, 160], [230, 120, 40], [90, 40, 120],
], np.float32) / 255
SKIN = np.array([[250, 215, 185], [225, 175, 135], [170, 120, 85], [110, 75, 50]], np.float32) / 255
HAIR = np.array([[20, 15, 10], [80, 50, 25], [190, 150, 80], [150, 150, 150]], np.float32) / 255


@dataclass(frozen=True)
class Identity:
    """Appearance of one person, fixed across cameras."""
    upper: np.ndarray        # (3,) main colour of the top
    upper2: np.ndarray       # (3,) second colour (stripes / checks / print)
    pattern: str             # "plain" | "stripes" | "checks"
    period: float            # pattern period, in person heights
    long_sleeves: bool
    lower: np.ndarray        # (3,)
    lower_kind: str          # "trousers" | "shorts" | "skirt"
    skin: np.ndarray         # (3,)
    hair: np.ndarray         # (3,)
    long_hair: bool
    shoes: np.ndarray        # (3,)
    height: float            # body height factor (~0.9-1.0)
    girth: float             # body width factor (~0.85-1.2)
    bag: str                 # "none" | "backpack" | "handbag"
    bag_colour: np.ndarray   # (3,)
    bag_side: int            # +1 / -1: side of the handbag
    front_print: bool        # logo on the chest, seen only from the front


@dataclass(frozen=True)
class Camera:
    """How one camera distorts what it sees."""
    gain: np.ndarray         # (3,) per-channel white-balance gain
    brightness: float
    gamma: float
    saturation: float
    blur: float              # gaussian sigma in pixels
    noise: float             # gaussian noise std (0-1 scale)
    background: np.ndarray   # (Hb, Wb, 3) texture, larger than an image: crops vary per image
    view_p: np.ndarray       # (4,) probability of front/back/left/right
    scale: float             # mean person height as a share of the image height


def _colour(rng: np.random.Generator, palette: np.ndarray, jitter: float = 0.04) -> np.ndarray:
    return np.clip(palette[rng.integers(len(palette))] + rng.normal(0, jitter, 3), 0, 1)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one person's appearance."""
    upper = rng.integers(len(CLOTHES))
    upper2 = (upper + rng.integers(1, len(CLOTHES))) % len(CLOTHES)  # always differs from upper
    jit = lambda i: np.clip(CLOTHES[i] + rng.normal(0, 0.04, 3), 0, 1)  # noqa: E731
    return Identity(
        upper=jit(upper), upper2=jit(upper2),
        pattern=str(rng.choice(["plain", "stripes", "checks"], p=[0.5, 0.3, 0.2])),
        period=float(rng.uniform(0.05, 0.1)), long_sleeves=bool(rng.random() < 0.6),
        lower=_colour(rng, CLOTHES),
        lower_kind=str(rng.choice(["trousers", "shorts", "skirt"], p=[0.65, 0.2, 0.15])),
        skin=_colour(rng, SKIN, 0.03), hair=_colour(rng, HAIR, 0.03),
        long_hair=bool(rng.random() < 0.35), shoes=_colour(rng, CLOTHES[:4]),
        height=float(rng.uniform(0.88, 1.0)), girth=float(rng.uniform(0.85, 1.2)),
        bag=str(rng.choice(["none", "backpack", "handbag"], p=[0.45, 0.35, 0.2])),
        bag_colour=_colour(rng, CLOTHES), bag_side=int(rng.choice([-1, 1])),
        front_print=bool(rng.random() < 0.3))


def sample_camera(rng: np.random.Generator, height: int, width: int,
                  strength: float = 1.0) -> Camera:
    """Draw one camera: colour cast, exposure, optics, background and viewpoint habits.

    ``strength`` scales the colour/exposure part (gain, brightness, gamma, saturation): 0 gives
    cameras that differ only in background, blur, noise and viewpoint (an ablation knob).
    """
    u = lambda lo, hi, n=None: strength * rng.uniform(lo, hi, n)  # noqa: E731
    return Camera(
        gain=(1 + u(-0.35, 0.35, 3)).astype(np.float32), brightness=float(1 + u(-0.2, 0.2)),
        gamma=float(np.exp(u(-0.35, 0.35))), saturation=float(1 + u(-0.45, 0.3)),
        blur=float(rng.uniform(0.0, 1.3)), noise=float(rng.uniform(0.005, 0.05)),
        background=make_background(rng, height + height // 4, width * 3),
        view_p=rng.dirichlet(np.full(4, 0.6)), scale=float(rng.uniform(0.8, 0.95)))


def make_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A camera's scene: wall over floor, tiles or stripes, and soft blotches."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wall, floor = rng.uniform(0.2, 0.8, (2, 3)).astype(np.float32)
    horizon = rng.uniform(0.45, 0.8) * h
    img = np.where((yy < horizon)[..., None], wall, floor)  # (h, w, 3)
    period = rng.uniform(6, 20)
    kind = rng.integers(3)
    if kind == 0:    # vertical stripes (shop fronts, fences)
        tex = np.sin(2 * np.pi * xx / period) > 0
    elif kind == 1:  # tiles
        tex = (np.floor(xx / period) + np.floor(yy / period)) % 2 == 0
    else:            # smooth blotches
        tex = np.sin(xx / period + rng.uniform(0, 6)) * np.cos(yy / period) > 0.3
    img = img * (1 + rng.uniform(0.1, 0.3) * (tex[..., None] - 0.5))
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)


# --- drawing primitives: signed distances inside a bounding box ------------------------------

def _window(img: np.ndarray, y0: float, y1: float, x0: float, x1: float):
    """Pixel-centre grids of the clipped box [y0, y1] x [x0, x1] (+1 px), or None if empty."""
    h, w = img.shape[:2]
    r0, r1 = max(int(y0) - 1, 0), min(int(np.ceil(y1)) + 2, h)
    c0, c1 = max(int(x0) - 1, 0), min(int(np.ceil(x1)) + 2, w)
    if r0 >= r1 or c0 >= c1:
        return None
    yy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5  # (h, 1): shapes broadcast
    xx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5  # (1, w)
    return (slice(r0, r1), slice(c0, c1)), yy, xx


def _paint(img, win, sd, colour) -> None:
    """Alpha-blend ``colour`` ((3,) or per-pixel) where the signed distance ``sd`` < 0."""
    a = np.clip(0.5 - sd, 0, 1)[..., None]  # (h, w, 1) soft edge one pixel wide
    img[win] = img[win] * (1 - a) + a * colour


def capsule(img, a, b, r, colour) -> None:
    """Segment a=(y, x) -> b with radius r (limbs)."""
    (ay, ax), (by, bx) = a, b
    w = _window(img, min(ay, by) - r, max(ay, by) + r, min(ax, bx) - r, max(ax, bx) + r)
    if w is None:
        return
    win, yy, xx = w
    py, px, dy, dx = yy - ay, xx - ax, by - ay, bx - ax
    t = np.clip((py * dy + px * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    _paint(img, win, np.hypot(py - t * dy, px - t * dx) - r, colour)


def ellipse(img, cy, cx, ry, rx, colour, keep=None) -> None:
    """Filled ellipse; ``keep(yy, xx)`` optionally restricts it (e.g. top half only)."""
    w = _window(img, cy - ry, cy + ry, cx - rx, cx + rx)
    if w is None:
        return
    win, yy, xx = w
    sd = (np.hypot((yy - cy) / ry, (xx - cx) / rx) - 1) * min(ry, rx)
    if keep is not None:
        sd = np.where(keep(yy, xx), sd, 1.0)
    _paint(img, win, sd, colour)


def box(img, y0, y1, x0, x1, colour) -> None:
    """Filled axis-aligned rectangle; ``colour`` may be a function of (yy, xx) (patterns)."""
    (y0, y1), (x0, x1) = sorted((y0, y1)), sorted((x0, x1))
    w = _window(img, y0, y1, x0, x1)
    if w is None:
        return
    win, yy, xx = w
    sd = np.maximum(np.maximum(y0 - yy, yy - y1), np.maximum(x0 - xx, xx - x1))
    _paint(img, win, sd, colour(yy, xx) if callable(colour) else colour)


# --- the person ------------------------------------------------------------------------------

def _garment(ident: Identity, top: float, P: float):
    """Per-pixel colour of the top: plain, horizontal stripes or checks."""
    per = ident.period * P
    def colour(yy, xx):
        if ident.pattern == "plain":
            return ident.upper
        on = np.sin(2 * np.pi * (yy - top) / per) > 0
        if ident.pattern == "checks":
            on = on ^ (np.sin(2 * np.pi * xx / per) > 0)
        return np.where(on[..., None], ident.upper2, ident.upper)
    return colour


def draw_person(img: np.ndarray, ident: Identity, view: str, top: float, cx: float, P: float,
                swing: float) -> None:
    """Draw ``ident`` seen from ``view`` with head top at row ``top``, centred on column ``cx``,
    ``P`` pixels tall; ``swing`` in [-1, 1] is the walking phase (legs and arms)."""
    side = view in ("left", "right")
    face = -1 if view == "left" else 1                     # direction the person faces (side)
    tw = P * 0.13 * ident.girth * (0.6 if side else 1.0)   # torso half-width
    y_sh, y_hip, y_knee, y_foot = top + 0.17 * P, top + 0.52 * P, top + 0.74 * P, top + 0.95 * P
    limb = 0.045 * P
    # backpack seen from the side sticks out behind the torso
    if ident.bag == "backpack" and side:
        box(img, y_sh + 0.02 * P, y_hip - 0.08 * P, cx - face * (tw + 0.09 * P), cx - face * tw,
            ident.bag_colour)
    # legs: spread apart from the front/back, fore/aft from the side
    leg_dx = (0.22 if side else 0.06) * P * swing
    for s in (-1, 1):
        hip_x = cx + (0 if side else s * 0.055 * P * ident.girth)
        foot = (y_foot, hip_x + s * leg_dx)
        knee = (y_knee, (hip_x + foot[1]) / 2)
        lower_leg = ident.skin if ident.lower_kind in ("shorts", "skirt") else ident.lower
        capsule(img, (y_hip, hip_x), knee, limb * 1.1, ident.lower)
        capsule(img, knee, foot, limb, lower_leg)
        ellipse(img, foot[0] + 0.01 * P, foot[1] + (face * 0.03 * P if side else 0),
                0.022 * P, 0.04 * P, ident.shoes)
    if ident.lower_kind == "skirt":
        box(img, y_hip - 0.04 * P, y_knee - 0.02 * P, cx - tw * 1.15, cx + tw * 1.15, ident.lower)
    else:
        box(img, y_hip - 0.04 * P, y_hip + 0.05 * P, cx - tw, cx + tw, ident.lower)
    # torso
    box(img, y_sh - 0.01 * P, y_hip, cx - tw, cx + tw, _garment(ident, top, P))
    if ident.front_print and view == "front":
        ellipse(img, y_sh + 0.1 * P, cx, 0.045 * P, 0.045 * P, ident.upper2 * 0.5 + 0.5 * (1 - ident.upper))
    if ident.bag == "backpack" and view == "back":
        box(img, y_sh + 0.03 * P, y_hip - 0.1 * P, cx - 0.7 * tw, cx + 0.7 * tw, ident.bag_colour)
    if ident.bag == "backpack" and view == "front":
        for s in (-1, 1):
            box(img, y_sh, y_hip - 0.15 * P, cx + s * 0.5 * tw - 0.012 * P,
                cx + s * 0.5 * tw + 0.012 * P, ident.bag_colour)
    # arms: swing opposite to the legs; short sleeves show skin below the elbow
    arms = (face,) if side else (-1, 1)
    for s in arms:
        sh = (y_sh + 0.02 * P, cx + (0 if side else s * (tw + 0.02 * P)))
        dx = (-0.15 * P * swing * s) if side else s * 0.02 * P
        elbow = (y_sh + 0.17 * P, sh[1] + dx / 2)
        hand = (y_sh + 0.33 * P, sh[1] + dx)
        capsule(img, sh, elbow, limb * 0.9, ident.upper)
        capsule(img, elbow, hand, limb * 0.8, ident.upper if ident.long_sleeves else ident.skin)
        ellipse(img, hand[0], hand[1], 0.025 * P, 0.025 * P, ident.skin)
        # handbag hangs from the hand on its side; from the back the sides are mirrored
        mirrored = -1 if view == "back" else 1
        visible = ident.bag_side == face if side else s == ident.bag_side * mirrored
        if ident.bag == "handbag" and visible:
            box(img, hand[0], hand[0] + 0.12 * P, hand[1] - 0.05 * P, hand[1] + 0.05 * P,
                ident.bag_colour)
    # head and hair
    hy, hr = top + 0.075 * P, 0.07 * P
    capsule(img, (hy + hr, cx), (y_sh, cx), 0.03 * P, ident.skin)  # neck
    if ident.long_hair and view != "front":
        box(img, hy, y_sh + 0.08 * P, cx - 0.055 * P, cx + 0.055 * P, ident.hair)
    elif ident.long_hair:  # seen from the front: strands beside the face
        box(img, hy, y_sh + 0.06 * P, cx - 0.07 * P, cx + 0.07 * P, ident.hair)
    ellipse(img, hy, cx, hr, hr * 0.8, ident.hair if view == "back" else ident.skin)
    if view == "front":
        ellipse(img, hy, cx, hr, hr * 0.82, ident.hair, keep=lambda yy, xx: yy < hy - 0.25 * hr)
    elif side:
        ellipse(img, hy, cx, hr, hr * 0.82, ident.hair,
                keep=lambda yy, xx: (yy < hy - 0.3 * hr) | ((xx - cx) * face < -0.1 * hr))


# --- the camera ------------------------------------------------------------------------------

def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable gaussian blur (edge padding)."""
    if sigma < 0.3:
        return img
    r = int(np.ceil(2.5 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    img = sum(wt * p[i:i + h] for i, wt in enumerate(k))
    p = np.pad(img, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(wt * p[:, i:i + w] for i, wt in enumerate(k))


def camera_distort(img: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Apply the camera's colour cast, saturation, exposure, gamma, blur and noise -> uint8."""
    gain = cam.gain * rng.uniform(0.96, 1.04, 3)         # small per-frame white-balance drift
    img = img * gain.astype(np.float32)
    grey = img.mean(-1, keepdims=True)                   # (H, W, 1)
    img = grey + cam.saturation * (img - grey)
    img = np.clip(img * cam.brightness * rng.uniform(0.93, 1.07), 0, 1) ** np.float32(cam.gamma)
    img = _blur(img, cam.blur)
    img = img + np.float32(cam.noise) * rng.standard_normal(img.shape, dtype=np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_image(ident: Identity, cam: Camera, rng: np.random.Generator, *, view: str,
                 scale: float, height: int, width: int, occlusion_p: float = 0.2) -> np.ndarray:
    """One detection box: camera background crop, the person with pose/scale/offset jitter, an
    optional occluder, then the camera's distortion. Returns (height, width, 3) uint8."""
    bh, bw = cam.background.shape[:2]
    y0, x0 = rng.integers(0, bh - height + 1), rng.integers(0, bw - width + 1)
    img = cam.background[y0:y0 + height, x0:x0 + width] * np.float32(rng.uniform(0.92, 1.08))
    P = height * scale * ident.height * rng.uniform(0.95, 1.05)
    top = (height - P) / 2 + rng.normal(0, 0.03) * height
    cx = width / 2 + rng.normal(0, 0.05) * width
    draw_person(img, ident, view, top, cx, P, swing=float(rng.uniform(-1, 1)))
    if rng.random() < occlusion_p:  # a passer-by or object in the background's colours
        oh, ow = rng.uniform(0.2, 0.45) * height, rng.uniform(0.3, 0.7) * width
        oy = rng.choice([0.0, height - oh])  # occluders come from the top or the bottom
        ox = rng.uniform(0, width - ow)
        colour = cam.background.mean((0, 1)) * rng.uniform(0.7, 1.3, 3)
        box(img, oy, oy + oh, ox, ox + ow, np.clip(colour, 0, 1))
    return camera_distort(img, cam, rng)
