"""Pedestrians and cyclists for MetaDrive's procedural (PG) maps, which spawn only vehicles.

A MetaDrive manager (registered by ``metadrive_env``) keeps them on the kerbside sidewalks 12-90 m ahead of the
ego; MetaDrive is imported only when the manager is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class _Mover:
    offset: float                     # m beyond the outer lane's edge
    base_speed: float                 # m/s
    lane: Any = None
    s: float = 0.0                    # m along the lane
    lateral: float = 0.0              # m from the lane centre, + = right
    speed: float = 0.0                # m/s, signed along the lane


def vru_manager(pedestrians: int, cyclists: int, frame_period: float) -> Any:
    """Pedestrians walking on the kerbside sidewalk and cyclists riding along its inner edge, ahead of the ego.

    Kinematic (static bodies moved along their lane each frame), respawned ahead when left behind. Models:
    MetaDrive's walking pedestrian and its bicycle (no rider is modelled).
    """
    from metadrive.component.traffic_participants.cyclist import Cyclist
    from metadrive.component.traffic_participants.pedestrian import Pedestrian
    from metadrive.manager.base_manager import BaseManager

    class VRUManager(BaseManager):
        def __init__(self) -> None:
            super().__init__()
            self.movers: dict[str, _Mover] = {}

        def after_reset(self) -> None:   # after the agent manager has placed the ego
            super().after_reset()
            self.movers = {}
            self.lanes = self._outer_lanes()
            for i in range(pedestrians + cyclists):
                # kerb offsets (m beyond the outer lane's edge; the sidewalk spans 0.2-2.2) and speeds (m/s)
                cls, offset, speed = (Pedestrian, 1.2, 1.3) if i < pedestrians else (Cyclist, 0.6, 4.0)
                obj = self.spawn_object(cls, position=(0.0, 0.0), heading_theta=0.0)
                obj.set_static(True)
                self.movers[obj.id] = m = _Mover(offset, speed)
                self._place_ahead(m)
                self._move(obj, m, 0.0)

        def _outer_lanes(self) -> list[Any]:
            out = []
            for ends in self.engine.current_map.road_network.graph.values():
                for lanes in ends.values():
                    ref = lanes[0]   # positive lateral = to the right of ref
                    out.append(max(lanes, key=lambda ln: ref.local_coordinates(ln.position(ln.length / 2, 0))[1]))
            return out

        def _ego(self) -> tuple[np.ndarray, np.ndarray]:
            ego = next(iter(self.engine.agents.values()))
            return np.asarray(ego.position), np.array([math.cos(ego.heading_theta), math.sin(ego.heading_theta)])

        def _place_ahead(self, m: _Mover) -> None:
            pos, head = self._ego()
            r = self.np_random
            for _ in range(200):   # rejection sampling: a kerb point 12-90 m ahead of the ego
                lane = self.lanes[int(r.randint(len(self.lanes)))]
                s = float(r.uniform(0, lane.length))
                d = np.asarray(lane.position(s, 0)) - pos
                if 12 < float(d @ head) < 90 and float(np.linalg.norm(d)) < 100:
                    break
            m.lane, m.s = lane, s
            m.lateral = lane.width / 2 + m.offset + float(r.uniform(-0.3, 0.3))
            m.speed = m.base_speed * float(r.uniform(0.8, 1.2)) * (1 if r.rand() < 0.5 else -1)

        def _move(self, obj: Any, m: _Mover, dt: float) -> None:
            m.s += m.speed * dt
            p = np.asarray(m.lane.position(m.s, m.lateral))
            pos, head = self._ego()
            if not 0 <= m.s <= m.lane.length or float((p - pos) @ head) < -15 or float(np.linalg.norm(p - pos)) > 150:
                self._place_ahead(m)
                p = np.asarray(m.lane.position(m.s, m.lateral))
            heading = m.lane.heading_theta_at(m.s) + (0.0 if m.speed > 0 else math.pi)
            obj.set_position(p, height=obj.HEIGHT / 2)
            obj.set_heading_theta(heading)
            if isinstance(obj, Pedestrian):   # selects the walking animation for the speed
                obj.set_velocity([math.cos(heading), math.sin(heading)], abs(m.speed))

        def before_step(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            for oid, m in self.movers.items():
                self._move(self.spawned_objects[oid], m, frame_period)
            return {}

    return VRUManager()
