"""Scoring a keyword detector against a ground truth: hits, false accepts per hour, DET curve.

:func:`score_detections` matches the detections of :func:`~quartznet_tutorial.kws.detector.detect`
to the events of a ground truth (``quartznet make-stream`` writes one) and gives hit rate,
miss rate and false accepts per hour; :func:`det_curve` moves the threshold over posteriors
computed once, and :func:`threshold_for` picks the threshold for a false-accept budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from quartznet_tutorial.kws.detector import DetectConfig, Detection, Posteriors, detect

__all__ = ["DetectionScore", "det_curve", "score_detections", "threshold_for"]


@dataclass
class DetectionScore:
    """Detections against a ground truth.

    A detection is a **hit** when a keyword event of the same word, not yet matched, has its
    time within ``tolerance`` seconds of the detection's (the nearest such event is taken);
    every other detection is a **false accept**. False accepts are split by where they fall:
    ``wrong`` within ``tolerance`` of a keyword of another word, ``repeats`` of a keyword
    already matched, ``near_other`` near a non-keyword the truth lists, ``in_noise`` near
    nothing spoken. Hit rate = hits / keyword events, miss rate = 1 - hit rate, false accepts
    per hour = false accepts / hours of audio.
    """

    events: int
    hits: int
    false_accepts: int
    wrong: int
    hours: float
    tolerance: float
    repeats: int = 0
    near_other: int = 0
    in_noise: int = 0
    matched: list[tuple[int, Detection]] = field(default_factory=list, repr=False)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.events if self.events else float("nan")

    @property
    def miss_rate(self) -> float:
        return 1.0 - self.hit_rate

    @property
    def false_accepts_per_hour(self) -> float:
        return self.false_accepts / self.hours

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "matched"}
        d.update(
            hit_rate=self.hit_rate,
            miss_rate=self.miss_rate,
            false_accepts_per_hour=self.false_accepts_per_hour,
        )
        return d


def _events(truth: dict) -> list[dict]:
    keywords = set(truth["keywords"])
    return [e for e in truth["events"] if e["word"] in keywords]


def score_detections(
    detections: Sequence[Detection], truth: dict, tolerance: float = 0.75
) -> DetectionScore:
    """Hits, misses and false accepts of ``detections`` against ``truth``.

    Args:
        detections (sequence of Detection): in any order.
        truth (dict): ``{"duration": seconds, "keywords": [...], "events": [{"word", "time"},
            ...]}``, as ``quartznet make-stream`` writes; only events of ``keywords`` count.
        tolerance (float, optional): seconds between a detection and its event's time (the
            centre of the spoken clip). (Default: ``0.75``)
    """
    events = _events(truth)
    times = np.array([e["time"] for e in events])
    others = np.array([e["time"] for e in truth["events"] if e["word"] not in truth["keywords"]])
    taken = np.zeros(len(events), dtype=bool)
    hits = wrong = repeats = near_other = in_noise = 0
    matched = []
    for d in sorted(detections, key=lambda d: d.time):
        near = np.abs(times - d.time) <= tolerance if len(times) else np.zeros(0, bool)
        same = [i for i in np.flatnonzero(near) if events[i]["word"] == d.word]
        free = [i for i in same if not taken[i]]
        if free:
            i = min(free, key=lambda i: abs(times[i] - d.time))
            taken[i] = True
            hits += 1
            matched.append((i, d))
        elif same:
            repeats += 1
        elif near.any():
            wrong += 1
        elif len(others) and (np.abs(others - d.time) <= tolerance).any():
            near_other += 1
        else:
            in_noise += 1
    false = wrong + repeats + near_other + in_noise
    return DetectionScore(
        len(events),
        hits,
        false,
        wrong,
        truth["duration"] / 3600,
        tolerance,
        repeats,
        near_other,
        in_noise,
        matched,
    )


def det_curve(
    posteriors: Posteriors,
    truth: dict,
    config: DetectConfig | None = None,
    thresholds: Sequence[float] | None = None,
    tolerance: float = 0.75,
) -> list[dict]:
    """Miss rate and false accepts per hour as the threshold moves (a DET curve).

    Returns:
        list of dict: ``{"threshold", "hit_rate", "miss_rate", "false_accepts",
        "false_accepts_per_hour"}``, one per threshold, in increasing threshold order.
    """
    config = config or DetectConfig(hop_ms=posteriors.hop_ms)
    if thresholds is None:
        thresholds = [round(t, 3) for t in np.linspace(0.3, 0.99, 70)]
    rows = []
    for t in sorted(thresholds):
        found = detect(posteriors, _replace(config, threshold=float(t)))
        s = score_detections(found, truth, tolerance)
        rows.append(
            {
                "threshold": float(t),
                "hit_rate": s.hit_rate,
                "miss_rate": s.miss_rate,
                "false_accepts": s.false_accepts,
                "false_accepts_per_hour": s.false_accepts_per_hour,
            }
        )
    return rows


def _replace(config: DetectConfig, **changes) -> DetectConfig:
    return DetectConfig(**{**asdict(config), **changes})


def threshold_for(curve: Sequence[dict], max_false_accepts_per_hour: float = 1.0) -> dict | None:
    """The row of ``curve`` with the lowest threshold (so the most hits) whose false accepts
    per hour are at most ``max_false_accepts_per_hour``, or ``None`` if none is.

    On a recording of ``h`` hours one false accept is ``1 / h`` per hour: a 10-minute stream
    can only show 0 or >= 6 per hour, so "<= 1 per hour" there means none at all.
    """
    ok = [r for r in curve if r["false_accepts_per_hour"] <= max_false_accepts_per_hour]
    return min(ok, key=lambda r: r["threshold"]) if ok else None
