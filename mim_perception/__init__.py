"""mim_perception: MIM-pretrained camera perception for ROS 2 (detection, segmentation, tracking, monitoring)."""

__version__ = "0.1.0"
