"""Kalman multi-object tracking (ROS-free): ``Tracker(cfg).update(detections, stamp_s) -> Tracks``."""

from mim_perception.core.tracking.kalman import BoxKalmanFilter, KalmanConfig
from mim_perception.core.tracking.tracker import Tracker, TrackerConfig, TrackerStats, Tracks, TrackState

__all__ = ["BoxKalmanFilter", "KalmanConfig", "TrackState", "Tracker", "TrackerConfig", "TrackerStats", "Tracks"]
