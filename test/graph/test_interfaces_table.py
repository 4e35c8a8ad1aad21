"""The documented node/topic table (mim_perception/ros/interfaces.py -> README) is what the running nodes really do."""

from __future__ import annotations

from conftest import wait_for

from mim_perception.ros.interfaces import NODES, resolve
from mim_perception.ros.runner import GraphRunner, graph_from_args

INTERNAL = {"/rosout", "/parameter_events"}


def test_running_nodes_match_the_documented_table(ros_context, probe, tiny_bundle, tmp_path):
    node, spin = probe
    params = tmp_path / "p.yaml"
    params.write_text(f"""/**:
  ros__parameters:
    graph: {{camera_monitor: true, perception: true, standalone_tracker: true}}
    backend: {{model: "{tiny_bundle}", warmup_runs: 0}}
""")
    _, specs = graph_from_args(str(params), ["front=/cam/front/image_raw"], None)
    assert {s.name for s in specs} == set(NODES)
    runner = GraphRunner(specs, context=ros_context, threads=3).start()
    try:
        for spec in specs:
            remap = dict(spec.remaps)
            _, ports = NODES[spec.name]

            def topic(p, spec=spec, remap=remap):
                return remap.get(p.topic, resolve(p.topic, spec.namespace, spec.name))

            def actual(kind, spec=spec):
                fn = node.get_publisher_names_and_types_by_node if kind == "out" else \
                    node.get_subscriber_names_and_types_by_node
                return {(t, ty[0]) for t, ty in fn(spec.name, spec.namespace)
                        if t not in INTERNAL and not t.endswith("/transition_event")}

            want_out = {(topic(p), p.msgtype) for p in ports if p.direction == "out"}
            want_in = {(topic(p), p.msgtype) for p in ports if p.direction == "in"}
            # publishers exist once bring_up returns; what can lag is DDS discovery (a CI run once took > 15 s)
            wait_for(lambda w=want_out, a=actual: a("out") >= w, 40, spin, f"{spec.name} publishers {sorted(want_out)}")
            assert actual("out") == want_out, spec.name
            got_in = actual("in")
            # an image node takes exactly one of its two image inputs (raw or compressed, input.transport)
            assert got_in and got_in <= want_in, (spec.name, got_in, want_in)
            assert len(got_in) == (1 if spec.name != "tracker" else len(want_in)), spec.name
    finally:
        runner.stop()
