"""A constant-velocity Kalman filter over a box's centre, width and height: it predicts where a
person is while nobody is detected there, so a track survives a short occlusion."""

from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]


def to_z(box: Box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], np.float64)


def to_box(z: np.ndarray) -> Box:
    cx, cy, w, h = (float(v) for v in z[:4])
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


class BoxKalman:
    """State: centre x, y, width, height and their velocities (pixels per frame)."""

    def __init__(self, box: Box) -> None:
        self.x = np.zeros(8)
        self.x[:4] = to_z(box)
        h = max(self.x[3], 1.0)
        self.P = np.diag([0.1 * h, 0.1 * h, 0.1 * h, 0.1 * h, 0.2 * h, 0.2 * h, 0.05 * h, 0.05 * h]) ** 2
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def _noise(self) -> tuple[np.ndarray, np.ndarray]:
        # Noise scales with the person's size: a near person moves more pixels a frame.
        h = max(float(self.x[3]), 1.0)
        q = np.diag([0.03 * h, 0.03 * h, 0.02 * h, 0.02 * h, 0.02 * h, 0.02 * h, 0.005 * h, 0.005 * h]) ** 2
        r = np.diag([0.06 * h, 0.06 * h, 0.12 * h, 0.08 * h]) ** 2
        return q, r

    def predict(self) -> Box:
        q, _ = self._noise()
        self.x = self.F @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 2.0)
        self.P = self.F @ self.P @ self.F.T + q
        return to_box(self.x)

    def update(self, box: Box) -> None:
        _, r = self._noise()
        y = to_z(box) - self.H @ self.x
        s = self.H @ self.P @ self.H.T + r
        k = self.P @ self.H.T @ np.linalg.inv(s)
        self.x = self.x + k @ y
        self.P = (np.eye(8) - k @ self.H) @ self.P

    @property
    def box(self) -> Box:
        return to_box(self.x)

    def slow_down(self) -> None:
        """While unseen, velocity decays: an occluded person rarely keeps a straight course."""
        self.x[4:] *= 0.9
